//! `shoal bench`: measures a real transfer between separate processes on loopback and prints
//! the figures next to plain TCP. Prints; asserts nothing. (Hashing speed next to
//! `sha256sum` is `cargo run --release -p shoal-storage --example hash_speed`.)
//!
//! Processes: `shoal-signal` (found next to this binary), one `shoal seed`, then one
//! `shoal get` per configuration. Memory is the kernel's peak resident set (`VmHWM`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Options of `shoal bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Size of the main transfer, in MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    size_mib: u64,
    /// Size of the memory check transfer, in MiB (0 skips it).
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    big_mib: u64,
    /// Connections per peer to compare, comma separated.
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    connections: Vec<usize>,
    /// Working folder (needs twice the sizes in free space). [default: a temporary folder]
    #[arg(long)]
    dir: Option<PathBuf>,
}

const MIB: f64 = 1024.0 * 1024.0;

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn peak_rss(&self) -> Option<u64> {
        peak_rss_of(self.child.id())
    }
}

fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this program")?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found next to {}; build it with `cargo build --release -p shoal-signal`",
            name,
            me.display()
        );
    }
    Ok(path)
}

fn random_file(path: &Path, mib: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?,
    );
    let mut rng = rand::rng();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        rng.fill_bytes(&mut buf);
        file.write_all(&buf)?;
    }
    file.flush()?;
    Ok(())
}

fn sha256_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Sends `path` over a loopback TCP connection with SHA-256 on both ends and writes it to
/// `out`. Returns MiB/s.
fn tcp_baseline(path: &Path, out: &Path) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let source = path.to_owned();
    let started = Instant::now();
    let sender = std::thread::spawn(move || -> anyhow::Result<[u8; 32]> {
        let (mut socket, _) = listener.accept()?;
        let mut file = std::fs::File::open(&source)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            socket.write_all(&buf[..n])?;
        }
        Ok(hasher.finalize().into())
    });
    let mut socket = TcpStream::connect(addr)?;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = socket.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        total += n as u64;
    }
    file.flush()?;
    let received: [u8; 32] = hasher.finalize().into();
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender thread panicked"))??;
    if sent != received {
        bail!("TCP baseline corrupted the data");
    }
    Ok(total as f64 / MIB / started.elapsed().as_secs_f64())
}

struct GetResult {
    wall_secs: f64,
    transfer_mib_s: f64,
    peak_rss: Option<u64>,
}

fn run_get(
    shoal: &Path,
    url: &str,
    info_hash: &str,
    out: &Path,
    connections: usize,
    expected: &[u8; 32],
) -> anyhow::Result<GetResult> {
    std::fs::create_dir_all(out)?;
    let started = Instant::now();
    let output = Command::new(shoal)
        .args(["get", info_hash, "--server", url, "--bind", "127.0.0.1:0"])
        .arg("--connections-per-peer")
        .arg(connections.to_string())
        .arg("--out")
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .context("run shoal get")?;
    let wall_secs = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("shoal get failed ({}): {stderr}", output.status);
    }
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if sha256_file(Path::new(&path))? != *expected {
        bail!("downloaded file differs from the original");
    }
    // "fetched N bytes from P peer(s) in T s (R MiB/s); resumed ...; peak RSS X MiB"
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("fetched "))
        .unwrap_or_default()
        .to_owned();
    let transfer_mib_s = summary
        .split('(')
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    let peak_rss = summary
        .split("peak RSS ")
        .nth(1)
        .and_then(parse_human_bytes);
    std::fs::remove_file(&path)?;
    Ok(GetResult {
        wall_secs,
        transfer_mib_s,
        peak_rss,
    })
}

fn parse_human_bytes(s: &str) -> Option<u64> {
    let mut parts = s.split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    let unit = match parts.next()? {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => MIB,
        "GiB" => MIB * 1024.0,
        _ => return None,
    };
    Some((value * unit) as u64)
}

fn mib(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.1} MiB", b as f64 / MIB))
        .unwrap_or_else(|| "?".into())
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let signal_bin = sibling("shoal-signal")?;
    let shoal = std::env::current_exe()?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; run `cargo run --release -p shoal-cli -- bench` for real figures"
        );
    }
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("shoal-bench").tempdir()?;
            temp.path().to_owned()
        }
    };
    println!("shoal bench in {}", dir.display());

    let source = dir.join("random-1.bin");
    println!("creating {} MiB of random data", args.size_mib);
    random_file(&source, args.size_mib)?;
    let expected = sha256_file(&source)?;

    let mut server = Proc {
        child: Command::new(&signal_bin)
            .args(["--listen", "127.0.0.1:0", "--status-interval", "1h"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start shoal-signal")?,
    };
    let mut url = String::new();
    BufReader::new(server.child.stdout.take().context("server stdout")?).read_line(&mut url)?;
    let url = url.trim().to_owned();

    let mut seeder = Proc {
        child: Command::new(&shoal)
            .args(["seed", "--server", &url, "--bind", "127.0.0.1:0"])
            .arg(&source)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start shoal seed")?,
    };
    let mut seeder_out = BufReader::new(seeder.child.stdout.take().context("seeder stdout")?);
    let mut line = String::new();
    seeder_out.read_line(&mut line)?;
    let info_hash = line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    if info_hash.len() != 64 {
        bail!("the seeder printed {line:?}, not an info hash");
    }

    let tcp = tcp_baseline(&source, &dir.join("tcp-copy.bin"))?;
    std::fs::remove_file(dir.join("tcp-copy.bin"))?;
    println!("plain TCP + SHA-256 both ends: {tcp:.1} MiB/s");

    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "shoal get", "MiB/s", "wall s", "vs TCP", "get RSS", "seed RSS"
    );
    for &connections in &args.connections {
        let result = run_get(
            &shoal,
            &url,
            &info_hash,
            &dir.join(format!("out-{connections}")),
            connections,
            &expected,
        )?;
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>10.2} {:>12} {:>12}",
            format!("{} MiB, {connections} conn/peer", args.size_mib),
            result.transfer_mib_s,
            result.wall_secs,
            result.transfer_mib_s / tcp,
            mib(result.peak_rss),
            mib(seeder.peak_rss())
        );
    }
    drop(seeder);
    std::fs::remove_file(&source)?;

    if args.big_mib > 0 {
        let big = dir.join("random-big.bin");
        println!("creating {} MiB of random data", args.big_mib);
        random_file(&big, args.big_mib)?;
        let expected = sha256_file(&big)?;
        let mut seeder = Proc {
            child: Command::new(&shoal)
                .args(["seed", "--server", &url, "--bind", "127.0.0.1:0"])
                .arg(&big)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("start shoal seed")?,
        };
        let mut line = String::new();
        BufReader::new(seeder.child.stdout.take().context("seeder stdout")?)
            .read_line(&mut line)?;
        let info_hash = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let connections = args.connections.last().copied().unwrap_or(2);
        let result = run_get(
            &shoal,
            &url,
            &info_hash,
            &dir.join("out-big"),
            connections,
            &expected,
        )?;
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>10} {:>12} {:>12}",
            format!("{} MiB, {connections} conn/peer", args.big_mib),
            result.transfer_mib_s,
            result.wall_secs,
            "",
            mib(result.peak_rss),
            mib(seeder.peak_rss())
        );
        drop(seeder);
        std::fs::remove_file(&big)?;
    }
    drop(server);
    Ok(())
}
