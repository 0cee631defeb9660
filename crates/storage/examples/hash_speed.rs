//! Measures `hash_file` against `sha256sum` on the same file.
//!
//! Usage: `cargo run --release -p shoal-storage --example hash_speed -- <file>`
//! (make a test file with `head -c 300M /dev/urandom > /tmp/r300`).
//!
//! Reads the file once to warm the page cache, then times three runs of each and prints the
//! best, so both read from memory and the figures compare hashing, not the disk.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or("usage: hash_speed <file>")?;
    let path = Path::new(&path);
    let len_bytes = std::fs::metadata(path)?.len();
    std::io::copy(&mut std::fs::File::open(path)?, &mut std::io::sink())?;
    println!(
        "file: {} ({:.1} MiB), {} cores, best of {RUNS} runs",
        path.display(),
        len_bytes as f64 / (1024.0 * 1024.0),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let mut best_ours = Duration::MAX;
    let mut info_hash = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let manifest = shoal_storage::hash_file(path, &mut |_| true)?;
        best_ours = best_ours.min(start.elapsed());
        info_hash = Some(manifest.info_hash());
    }
    let ours = mib_per_s(len_bytes, best_ours);
    println!("hash_file: {ours:.0} MiB/s ({best_ours:.2?})");
    if let Some(info_hash) = info_hash {
        println!("info hash: {info_hash}");
    }

    let mut best_theirs = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        let status = Command::new("sha256sum")
            .arg(path)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("sha256sum failed: {status}").into());
        }
        best_theirs = best_theirs.min(start.elapsed());
    }
    let theirs = mib_per_s(len_bytes, best_theirs);
    println!("sha256sum: {theirs:.0} MiB/s ({best_theirs:.2?})");
    println!("ratio hash_file / sha256sum: {:.2}x", ours / theirs);
    Ok(())
}
