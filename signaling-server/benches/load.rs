//! Load generator for `shoal-signal` (issue 2's benchmark; prints figures, asserts nothing).
//!
//! Starts the real server binary on loopback (or uses `--server URL`), opens N WebSocket
//! connections that each complete hello/welcome, measures the server's resident memory with
//! them idle, then relays signals between random pairs at a fixed rate and reports relayed
//! messages per second and p50/p99 relay latency (send to receive, same clock).
//!
//! With `--announce-connections 100 --searchers 4` it first fills the index (100 connections
//! x 1,000 files) and runs hostile searchers beside the relay phase: each repeats a 128-word
//! query (the server refuses it) and a 32-word query of one-letter words (the most work a
//! query may ask for), and the figures show what that does to relay latency (issue 8, item 7).
//!
//! ```text
//! cargo bench -p shoal-signal --bench load -- --connections 10000 --rate 10000 --seconds 10
//! cargo bench -p shoal-signal --bench load -- --connections 10000 --rate 10000 --seconds 10 \
//!     --announce-connections 100 --searchers 4
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use shoal_protocol::{NodeId, ServerToClient, Signal};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// WebSocket connections to hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Signals relayed per second during the relay phase.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Length of the relay phase, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Bytes of SDP text per signal (a real offer is a few hundred bytes).
    #[arg(long, default_value_t = 400)]
    sdp_bytes: usize,
    /// Connections that each announce `--files-per-connection` files before the relay phase.
    #[arg(long, default_value_t = 0)]
    announce_connections: usize,
    /// Files each announcing connection announces (random five-word names).
    #[arg(long, default_value_t = 1000)]
    files_per_connection: usize,
    /// Extra connections that search as fast as the server answers during the relay phase.
    #[arg(long, default_value_t = 0)]
    searchers: usize,
    /// Use this running server instead of starting one (memory is then not measured).
    #[arg(long)]
    server: Option<String>,
    /// Ignored: cargo bench passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

struct Server {
    child: Option<Child>,
    url: String,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal-signal"))
            .args(["--listen", "127.0.0.1:0", "--status-interval", "1h"])
            // Every load connection comes from 127.0.0.1.
            .args(["--max-connections-per-address", "1000000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoal-signal");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read URL");
        Self {
            child: Some(child),
            url: line.trim().to_owned(),
        }
    }

    /// (current, peak) resident memory in bytes, from /proc/<pid>/status.
    fn rss(&self) -> Option<(u64, u64)> {
        let pid = self.child.as_ref()?.id();
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
        };
        Some((field("VmRSS:")?, field("VmHWM:")?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Stats {
    received: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u32>>,
}

struct Peer {
    id: NodeId,
    tx: mpsc::Sender<String>,
}

async fn open(url: String, epoch: Instant, stats: Arc<Stats>) -> anyhow::Result<Peer> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    let (mut sink, mut stream) = ws.split();
    sink.send(Message::text(
        r#"{"type":"hello","version":1,"agent":"load"}"#,
    ))
    .await?;
    let id = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                if let Ok(ServerToClient::Welcome { node_id, .. }) = serde_json::from_str(&text) {
                    break node_id;
                }
            }
            Some(Ok(_)) => {}
            other => anyhow::bail!("no welcome: {other:?}"),
        }
    };
    let (tx, mut rx) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                outgoing = rx.recv() => match outgoing {
                    Some(text) => if sink.send(Message::text(text)).await.is_err() { break },
                    None => break,
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(ServerToClient::Signal { signal: Signal::Offer { sdp }, .. }) =
                            serde_json::from_str(&text)
                        {
                            let sent: u64 = sdp.split(' ').next().and_then(|t| t.parse().ok()).unwrap_or(0);
                            let now = epoch.elapsed().as_micros() as u64;
                            stats.received.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut l) = stats.latencies_us.lock() {
                                l.push(now.saturating_sub(sent) as u32);
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
    });
    Ok(Peer { id, tx })
}

/// Sends `announce` batches of 32 random five-word names; waits for every `announced`.
async fn announce_files(url: String, files: usize, seed: u64) -> anyhow::Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Message::text(r#"{"type":"hello","version":1}"#))
        .await?;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let mut batches = 0;
    for start in (0..files).step_by(32) {
        let batch: Vec<serde_json::Value> = (start..(start + 32).min(files))
            .map(|_| {
                let hash: String = (0..32)
                    .map(|_| format!("{:02x}", rng.random::<u8>()))
                    .collect();
                let name: Vec<String> = (0..5)
                    .map(|_| format!("w{}", rng.random_range(0..50_000)))
                    .collect();
                serde_json::json!({"info_hash": hash, "name": format!("{}.mp4", name.join(" ")),
                    "size": 1000, "mime": "video/mp4", "category": "video"})
            })
            .collect();
        ws.send(Message::text(
            serde_json::json!({"type": "announce", "files": batch}).to_string(),
        ))
        .await?;
        batches += 1;
    }
    let mut answered = 0;
    while answered < batches {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                Ok(ServerToClient::Announced { .. }) => answered += 1,
                Ok(ServerToClient::Error { reason, .. }) => {
                    anyhow::bail!("announce refused: {reason}")
                }
                _ => {}
            },
            Some(Ok(_)) => {}
            other => anyhow::bail!("announcer closed: {other:?}"),
        }
    }
    // Keep the connection (and its files) until the process ends.
    tokio::spawn(async move { while ws.next().await.is_some() {} });
    Ok(())
}

/// Counts of what a hostile searcher got.
#[derive(Default)]
struct SearchCounts {
    answered: AtomicU64,
    refused: AtomicU64,
    max_wait_us: AtomicU64,
}

/// Alternates a 128-word query and a 32-word one of single letters until `until`.
async fn search_hard(url: String, until: Instant, counts: Arc<SearchCounts>) -> anyhow::Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    ws.send(Message::text(r#"{"type":"hello","version":1}"#))
        .await?;
    let letters: Vec<String> = ('a'..='z').chain('0'..='5').map(String::from).collect();
    let long: Vec<String> = (0..128).map(|i| format!("w{i}")).collect();
    let queries = [long.join(" "), letters.join(" ")];
    let mut n = 0usize;
    while Instant::now() < until {
        let query = &queries[n % 2];
        n += 1;
        let asked = Instant::now();
        ws.send(Message::text(
            serde_json::json!({"type": "search", "query": query, "request_id": n}).to_string(),
        ))
        .await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                    Ok(ServerToClient::SearchResult { .. }) => {
                        counts.answered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(ServerToClient::Error { .. }) => {
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                // Closed for abuse: open a new connection, as a determined attacker would.
                _ => return Box::pin(search_hard(url, until, counts)).await,
            }
        }
        counts
            .max_wait_us
            .fetch_max(asked.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let server = match &args.server {
        Some(url) => Server {
            child: None,
            url: url.clone(),
        },
        None => Server::start(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args, server))
}

async fn run(args: Args, server: Server) -> anyhow::Result<()> {
    let epoch = Instant::now();
    let stats = Arc::new(Stats {
        received: AtomicU64::new(0),
        latencies_us: std::sync::Mutex::new(Vec::new()),
    });
    println!("server: {}", server.url);
    let baseline = server.rss();

    let started = Instant::now();
    let peers: Vec<Peer> = futures_util::stream::iter(0..args.connections)
        .map(|_| open(server.url.clone(), epoch, stats.clone()))
        .buffer_unordered(256)
        .filter_map(|r| async move { r.map_err(|e| eprintln!("connect failed: {e}")).ok() })
        .collect()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    println!(
        "connections held: {} of {} (opened in {:.1} s, {:.0}/s)",
        peers.len(),
        args.connections,
        connect_secs,
        peers.len() as f64 / connect_secs
    );
    // Let the server settle (allocator, buffers) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let (Some((base, _)), Some((idle, _))) = (baseline, server.rss()) {
        println!(
            "server RSS idle: {:.1} MiB with {} connections ({:.1} MiB before; {:.1} KiB per connection)",
            mib(idle),
            peers.len(),
            mib(base),
            (idle.saturating_sub(base)) as f64 / 1024.0 / peers.len().max(1) as f64
        );
    }
    if peers.len() < 2 {
        anyhow::bail!("need at least two connections");
    }

    if args.announce_connections > 0 {
        let started = Instant::now();
        let announcers: Vec<_> = (0..args.announce_connections)
            .map(|i| announce_files(server.url.clone(), args.files_per_connection, i as u64))
            .collect();
        for result in futures_util::future::join_all(announcers).await {
            result?;
        }
        println!(
            "index: {} files announced by {} connections in {:.1} s",
            args.announce_connections * args.files_per_connection,
            args.announce_connections,
            started.elapsed().as_secs_f64()
        );
        // Let the last `index_changed` reach every connection (10,000 writes) first.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let search_counts = Arc::new(SearchCounts::default());
    let search_until = Instant::now() + Duration::from_secs(args.seconds);
    for _ in 0..args.searchers {
        let (url, counts) = (server.url.clone(), search_counts.clone());
        tokio::spawn(async move {
            if let Err(e) = search_hard(url, search_until, counts).await {
                eprintln!("searcher: {e}");
            }
        });
    }

    let pad = "x".repeat(args.sdp_bytes);
    let total = args.rate * args.seconds;
    let mut sent = 0u64;
    let mut dropped_locally = 0u64;
    let mut rng = rand::rng();
    let relay_start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while sent < total {
        tick.tick().await;
        let due = ((relay_start.elapsed().as_secs_f64() * args.rate as f64) as u64).min(total);
        while sent < due {
            let a = rng.random_range(0..peers.len());
            let mut b = rng.random_range(0..peers.len());
            if b == a {
                b = (b + 1) % peers.len();
            }
            let now = epoch.elapsed().as_micros();
            let text = format!(
                r#"{{"type":"signal","to":"{}","connection_id":"c0a8e1f2-3b4d-4c5e-8f6a-7b8c9d0e1f2a","signal":{{"kind":"webrtc_offer","sdp":"{now} {pad}"}}}}"#,
                peers[b].id
            );
            if peers[a].tx.try_send(text).is_err() {
                dropped_locally += 1;
            }
            sent += 1;
        }
    }
    let send_secs = relay_start.elapsed().as_secs_f64();
    let peak_under_load = server.rss();
    // Wait for stragglers: until nothing new arrives for 500 ms.
    let mut last = stats.received.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = stats.received.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let received = stats.received.load(Ordering::Relaxed);
    let mut latencies = stats
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort_unstable();
    println!(
        "relay: sent {sent} signals in {send_secs:.2} s ({:.0}/s offered), received {received} ({:.0}/s), not sent (client queue full) {dropped_locally}",
        sent as f64 / send_secs,
        received as f64 / send_secs,
    );
    println!(
        "relay latency: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        percentile(&latencies, 1.0)
    );
    if args.searchers > 0 {
        println!(
            "hostile searchers: {} beside the relay; {} queries answered, {} refused, slowest answer {:.1} ms",
            args.searchers,
            search_counts.answered.load(Ordering::Relaxed),
            search_counts.refused.load(Ordering::Relaxed),
            search_counts.max_wait_us.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }
    if let Some((rss, peak)) = peak_under_load {
        println!(
            "server RSS under load: {:.1} MiB (peak so far {:.1} MiB)",
            mib(rss),
            mib(peak)
        );
    }
    Ok(())
}
