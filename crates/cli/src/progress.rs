//! Progress display: indicatif bars on a terminal, plain periodic lines otherwise (so logs and
//! tests can follow a transfer).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use shoal_node::DownloadProgress;

/// Whether stderr is a terminal (bars) or not (lines).
fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Peak resident memory of this process in bytes (`VmHWM` in /proc/self/status).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Hashing bars for `shoal seed`.
pub struct Bars;

impl Bars {
    pub fn new() -> Self {
        Self
    }

    pub fn hashing(&self, path: &Path) -> Hashing {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bar = interactive().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "hashing {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(name.clone());
            bar
        });
        Hashing { bar, name }
    }
}

pub struct Hashing {
    bar: Option<ProgressBar>,
    name: String,
}

impl Hashing {
    pub fn update(&self, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            None => eprintln!("hashing {}: {done} of {total} bytes", self.name),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The bar (or lines) of `shoal get`.
pub struct Transfer {
    bar: Option<ProgressBar>,
    /// When the last plain line was printed, and the bytes it showed.
    last_line: Mutex<Option<(Instant, u64)>>,
}

impl Transfer {
    pub fn new(name: &str, len_bytes: u64) -> Self {
        let bar = interactive().then(|| {
            let bar = ProgressBar::new(len_bytes);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {prefix} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            last_line: Mutex::new(None),
        }
    }

    pub fn update(&self, p: &DownloadProgress) {
        let rate = p.rate_bytes_per_sec / (1024.0 * 1024.0);
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.len_bytes);
                bar.set_position(p.bytes_done);
                bar.set_prefix(format!("{rate:.1} MiB/s, {}", peers(p.peers)));
            }
            None => {
                // "progress <done> <total> <MiB/s> <peers>" when something changed, at most
                // four lines a second.
                let Ok(mut last) = self.last_line.lock() else {
                    return;
                };
                if last.is_some_and(|(t, done)| {
                    done == p.bytes_done || t.elapsed() < Duration::from_millis(200)
                }) {
                    return;
                }
                *last = Some((Instant::now(), p.bytes_done));
                eprintln!(
                    "progress {} {} {rate:.1} MiB/s {}",
                    p.bytes_done,
                    p.len_bytes,
                    peers(p.peers)
                );
            }
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish();
        }
    }

    pub fn abandon(self) {
        if let Some(bar) = self.bar {
            bar.abandon();
        }
    }
}

/// Prints a line above the bar (or plainly).
pub fn note(bar: &Option<Transfer>, line: &str) {
    match bar.as_ref().and_then(|b| b.bar.as_ref()) {
        Some(bar) => bar.println(line),
        None => eprintln!("{line}"),
    }
}

/// "1 peer", "2 peers": a count of peers (nodes, not connections) in words.
pub fn peers(n: usize) -> String {
    if n == 1 {
        "1 peer".to_owned()
    } else {
        format!("{n} peers")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes_picks_a_readable_unit() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }
}
