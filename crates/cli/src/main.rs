//! `shoal`: share and fetch media peer to peer from the command line.
//!
//! Exit codes: 0 success, 1 failure (message on stderr), 2 bad usage, 130 interrupted (SIGINT,
//! Ctrl-C), 143 terminated (SIGTERM). `shoal seed` exits 0 on either signal: stopping is how it
//! ends.
//!
//! Every string from the network (names, server messages) is printed through
//! [`shoal_node::text::inert`]: no escape sequence, carriage return or bidi override reaches the
//! terminal.

mod bench;
mod player;
mod progress;
mod record;
mod room;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use shoal_node::text::inert;
use shoal_node::{
    Category, ConnectionState, IceServer, IndexedFile, InfoHash, Node, NodeConfig, NodeEvent,
    NodeHandle, RtcConfig,
};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

/// Longest name `ls` and `search` print, in characters (names may be 255 bytes).
const NAME_CHARS: usize = 120;

/// Share media peer to peer: seed files, list and search what the network shares, and fetch
/// files straight from the peers that hold them, verified piece by piece.
#[derive(Debug, Parser)]
#[command(name = "shoal", version)]
struct Cli {
    #[command(flatten)]
    net: NetArgs,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Args)]
struct NetArgs {
    /// Signaling server URL.
    #[arg(
        long,
        global = true,
        default_value = "ws://127.0.0.1:7878",
        value_name = "URL"
    )]
    server: String,
    /// Extra STUN server, e.g. stun:stun.l.google.com:19302 (the server may send more).
    #[arg(long, global = true, value_name = "URL")]
    stun: Vec<String>,
    /// Extra TURN server, e.g. turn:turn.example.org:3478 (UDP).
    #[arg(long, global = true, value_name = "URL")]
    turn: Vec<String>,
    /// User name for the --turn servers.
    #[arg(long, global = true, value_name = "NAME")]
    turn_username: Option<String>,
    /// Password for the --turn servers.
    #[arg(long, global = true, value_name = "SECRET")]
    turn_credential: Option<String>,
    /// Local UDP addresses for peer connections (repeatable). 0.0.0.0:0 covers every
    /// interface except loopback. [default: 0.0.0.0:0 and 127.0.0.1:0]
    #[arg(long, global = true, value_name = "ADDR")]
    bind: Vec<SocketAddr>,
    /// Peer connections per holder; two run about twice as fast as one on fast paths.
    #[arg(long, global = true, default_value_t = 2, value_name = "N")]
    connections_per_peer: usize,
    /// How long to wait for a peer connection to open before trying elsewhere (e.g. 20s).
    #[arg(long, global = true, default_value = "20s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Most MiB/s this node sends to peers, over all transfers (e.g. 8 or 0.5).
    #[arg(long, global = true, value_name = "MIB_PER_SEC", value_parser = parse_rate)]
    max_upload: Option<u64>,
    /// Most MiB/s this node takes from peers, over all transfers.
    #[arg(long, global = true, value_name = "MIB_PER_SEC", value_parser = parse_rate)]
    max_download: Option<u64>,
}

/// A rate in MiB/s (a positive number) as bytes per second.
fn parse_rate(text: &str) -> Result<u64, String> {
    let mib: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of MiB/s"))?;
    if !(mib.is_finite() && mib > 0.0) {
        return Err(format!("a rate must be more than 0 MiB/s, not {text}"));
    }
    let bytes = mib * 1024.0 * 1024.0;
    if bytes < 1024.0 {
        return Err(format!("{text} MiB/s is below 1 KiB/s"));
    }
    Ok(bytes.min(u64::MAX as f64) as u64)
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Hash files, announce them, and serve them until Ctrl-C. Prints "<info hash>  <name>"
    /// per file on stdout.
    Seed {
        /// Files to share.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the files the network shares.
    Ls {
        /// Only this category: audio, video, image or other.
        #[arg(long)]
        category: Option<Category>,
    },
    /// Search the network's files by name (every word must match, case-insensitive).
    Search {
        /// Words to look for.
        #[arg(required = true)]
        words: Vec<String>,
        /// Only this category: audio, video, image or other.
        #[arg(long)]
        category: Option<Category>,
    },
    /// Download a file by info hash from every peer that holds it, complete or partial. Prints
    /// the final path on stdout; exits 0 only when the verified file is in place. Resumes a
    /// .part file. While it runs it serves the pieces it has verified to other downloaders.
    Get {
        /// The file's info hash (64 hex characters).
        info_hash: InfoHash,
        /// Folder to download into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Once complete, keep serving the file (as `seed` does) until Ctrl-C, then exit 0.
        #[arg(long)]
        seed_after: bool,
    },
    /// Download a file and play it while it arrives: prints a loopback http:// URL on stdout
    /// that mpv, VLC or a browser can play and seek (HTTP Range) while the download runs; the
    /// pieces a player reads come first. Keeps serving the URL and the file after the
    /// download completes, until Ctrl-C; Ctrl-C before that keeps the .part file.
    Watch {
        /// The file's info hash (64 hex characters).
        info_hash: InfoHash,
        /// Folder to download into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Rooms: watch a video together, the host's play/pause/seek followed by everyone.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Benchmark: a signaling server, a seeder and a downloader as separate processes on
    /// loopback; prints MiB/s and peak memory next to plain TCP and sha256sum.
    Bench(bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum RoomCommand {
    /// Share FILE and open a room watching it, with this node as the host. Prints "room
    /// <code>" and "link <link>" on stdout and the room's events on stderr; reads commands
    /// from stdin: play, pause, seek <seconds|N%>, go-on, live (stream FILE to the members),
    /// status, quit.
    Host {
        /// The media file.
        file: PathBuf,
        /// The name members see.
        #[arg(long)]
        name: Option<String>,
        /// How long the room waits for a buffering member before it goes on without it
        /// (e.g. 15s).
        #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = humantime::parse_duration)]
        wait_timeout: Duration,
        /// Go live: stream FILE to the members over WebRTC media tracks, paced in real time
        /// (MP4 with H.264, WebM with VP8/VP9 and Opus; passed through, not re-encoded).
        #[arg(long)]
        live: bool,
        /// With --live: start the file again at its end.
        #[arg(long = "loop", requires = "live")]
        looping: bool,
    },
    /// Join a room by its code or link and download its media. Prints "room <code>" on
    /// stdout and the room's events on stderr until the room ends.
    Join {
        /// The room's code (K7M3-XQ9P) or link (32 hex digits).
        room: String,
        /// Play the media with a headless player that follows the host, and print once a
        /// second its position, the host's, and the drift between them.
        #[arg(long, conflicts_with = "record")]
        follow: bool,
        /// Record the host's live stream instead of downloading the media, as it arrives,
        /// until the stream ends: a path ending in .mp4 gets video and Opus audio as
        /// fragmented MP4; any other gets the video alone (IVF for VP8/VP9, an Annex-B
        /// stream for H.264).
        #[arg(long, value_name = "PATH")]
        record: Option<PathBuf>,
        /// Folder to download into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// The name other members see.
        #[arg(long)]
        name: Option<String>,
    },
}

/// Log filter when RUST_LOG is unset.
const DEFAULT_LOG_FILTER: &str =
    "error,shoal_node=warn,shoal_rtc=warn,shoal_storage=warn,shoal_transfer=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Our warnings by default; webrtc-rs logs transient ICE noise at warn.
    shoal_node::init_logging(DEFAULT_LOG_FILTER);
    if let Commands::Bench(args) = &cli.command {
        return match bench::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shoal bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shoal: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shoal: {}", inert(&format!("{e:#}"), usize::MAX));
            ExitCode::FAILURE
        }
    }
}

/// A stop request: Ctrl-C or SIGTERM.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Interrupt,
    Terminate,
}

/// SIGINT and SIGTERM handlers, installed once when the program starts so that a signal that
/// arrives while the program is busy elsewhere (hashing, connecting, handling an event) is
/// kept until it is read, never lost.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
        })
    }

    async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.interrupt.recv() => Stop::Interrupt,
            _ = self.terminate.recv() => Stop::Terminate,
        }
    }
}

fn node_config(net: &NetArgs) -> NodeConfig {
    let mut rtc = RtcConfig::every_interface();
    if !net.bind.is_empty() {
        rtc.bind_addrs = net.bind.clone();
    }
    rtc.ice_servers.extend(IceServer::from_flags(
        &net.stun,
        &net.turn,
        net.turn_username.as_deref(),
        net.turn_credential.as_deref(),
    ));
    NodeConfig {
        server_url: net.server.clone(),
        rtc,
        connections_per_peer: net.connections_per_peer.max(1),
        connect_timeout: net.connect_timeout,
        max_upload_bytes_per_sec: net.max_upload,
        max_download_bytes_per_sec: net.max_download,
        agent: format!("shoal-cli/{}", env!("CARGO_PKG_VERSION")),
        ..NodeConfig::default()
    }
}

/// Waits for the first successful connection to the signaling server.
async fn connected(events: &mut mpsc::Receiver<NodeEvent>, url: &str) -> anyhow::Result<()> {
    let wait = async {
        let mut last = String::from("no answer");
        while let Some(event) = events.recv().await {
            match event {
                NodeEvent::Connection(ConnectionState::Connected { .. }) => return Ok(()),
                NodeEvent::Connection(ConnectionState::Disconnected { reason, .. }) => {
                    last = reason;
                }
                _ => {}
            }
        }
        Err(last)
    };
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => bail!("cannot reach the signaling server at {url}: {reason}"),
        Err(_) => bail!("cannot reach the signaling server at {url} within 10 s"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut signals = StopSignals::install()?;
    let mut config = node_config(&cli.net);
    // A finished download stays shared only when asked to.
    config.share_completed = matches!(
        cli.command,
        Commands::Get {
            seed_after: true,
            ..
        } | Commands::Watch { .. }
            | Commands::Room(RoomCommand::Join { .. })
    );
    let (node, mut events) = Node::spawn(config);
    // What each share sent, from its upload events; said when serving stops.
    let served = Served::default();
    // Stopping ends `seed`, and `get --seed-after` once its file is complete: exit 0.
    let seeding = std::cell::Cell::new(matches!(
        cli.command,
        Commands::Seed { .. } | Commands::Room(RoomCommand::Host { .. })
    ));
    let downloading = matches!(
        cli.command,
        Commands::Get { .. } | Commands::Watch { .. } | Commands::Room(RoomCommand::Join { .. })
    );
    let work = async {
        connected(&mut events, &cli.net.server).await?;
        anyhow::Ok(match cli.command {
            Commands::Seed { files } => seed(&node, &mut events, files, &served).await?,
            Commands::Ls { category } => {
                print_files(&node.list(category).await?);
                ExitCode::SUCCESS
            }
            Commands::Search { words, category } => {
                print_files(&node.search(&words.join(" "), category).await?);
                ExitCode::SUCCESS
            }
            Commands::Get {
                info_hash,
                out,
                seed_after,
            } => {
                let transfer = node.download(info_hash, Some(out)).await?.transfer();
                let code = follow(&mut events, transfer).await?;
                if seed_after {
                    seeding.set(true);
                    serve(&mut events, &served).await?;
                }
                code
            }
            Commands::Watch { info_hash, out } => {
                let transfer = node.download(info_hash, Some(out)).await?.transfer();
                let url = node.stream_url(transfer).await?;
                println!("{url}");
                eprintln!("play {url} (mpv, VLC); it plays and seeks while the file arrives");
                follow(&mut events, transfer).await?;
                seeding.set(true);
                eprintln!("complete; still serving {url}");
                serve(&mut events, &served).await?
            }
            Commands::Room(RoomCommand::Host {
                file,
                name,
                wait_timeout,
                live,
                looping,
            }) => {
                let options = room::HostOptions {
                    file,
                    name,
                    wait_timeout,
                    live: live.then_some(looping),
                };
                room::host(&node, &mut events, options, &served).await?;
                ExitCode::SUCCESS
            }
            Commands::Room(RoomCommand::Join {
                room,
                record: Some(path),
                ..
            }) => {
                record::record(&node, &mut events, &room, path).await?;
                ExitCode::SUCCESS
            }
            Commands::Room(RoomCommand::Join {
                room,
                follow,
                out,
                name,
                record: None,
            }) => {
                let options = room::JoinOptions {
                    room,
                    out,
                    follow,
                    name,
                };
                room::join(&node, &mut events, options).await?;
                ExitCode::SUCCESS
            }
            Commands::Bench(_) => unreachable!("handled before the runtime starts"),
        })
    };
    let result = tokio::select! {
        result = work => result,
        stop = signals.recv() => {
            let seeding = seeding.get();
            if downloading && !seeding {
                eprintln!("interrupted; the .part file is kept, run the same command to resume");
            }

            Ok(match stop {
                _ if seeding => ExitCode::SUCCESS,
                Stop::Interrupt => ExitCode::from(130),
                Stop::Terminate => ExitCode::from(143),
            })
        }
    };
    // Saves download state and says goodbye to peers and the server.
    node.shutdown().await;
    if seeding.get() {
        // Each share's last upload event comes as it stops.
        while let Ok(event) = events.try_recv() {
            if let NodeEvent::UploadProgress(p) = event {
                served.note(&p);
            }
        }
        served.report();
    }
    result
}

fn print_files(files: &[IndexedFile]) {
    if files.is_empty() {
        eprintln!("no files");
        return;
    }
    for f in files {
        // Holders of the whole file, and "+N partial" for viewers still downloading.
        let partial = match f.partial_holders.len() {
            0 => String::new(),
            n => format!(" +{n} partial"),
        };
        println!(
            "{}  {:>10}  {:<5}  {:>2} holder{}{partial}  {}",
            f.info_hash,
            progress::human_bytes(f.size),
            f.category.as_str(),
            f.holders.len(),
            if f.holders.len() == 1 { " " } else { "s" },
            inert(&f.name, NAME_CHARS)
        );
    }
}

async fn seed(
    node: &NodeHandle,
    events: &mut mpsc::Receiver<NodeEvent>,
    files: Vec<PathBuf>,
    served: &Served,
) -> anyhow::Result<ExitCode> {
    for path in files {
        let path = std::fs::canonicalize(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let shared = share_one(node, events, path).await?;
        println!("{}  {}", shared.info_hash, inert(&shared.name, usize::MAX));
    }
    serve(events, served).await
}

/// Shares `path` (absolute), showing the hashing's progress.
async fn share_one(
    node: &NodeHandle,
    events: &mut mpsc::Receiver<NodeEvent>,
    path: PathBuf,
) -> anyhow::Result<shoal_node::SharedFile> {
    let bars = progress::Bars::new();
    let share = node.share(path.clone());
    tokio::pin!(share);
    let bar = bars.hashing(&path);
    let shared = loop {
        tokio::select! {
            result = &mut share => break result,
            Some(event) = events.recv() => {
                if let NodeEvent::HashingProgress { bytes_done, len_bytes, .. } = event {
                    bar.update(bytes_done, len_bytes);
                }
            }
        }
    };
    bar.finish();
    shared.with_context(|| format!("cannot share {}", path.display()))
}

/// Bytes sent and peers served per share, from the node's upload events.
#[derive(Default)]
struct Served(std::cell::RefCell<std::collections::BTreeMap<String, (u64, usize)>>);

impl Served {
    fn note(&self, p: &shoal_node::UploadProgress) {
        self.0
            .borrow_mut()
            .insert(p.info_hash.to_string(), (p.sent_bytes, p.peers_served));
    }

    /// One line per share that sent anything: "served <info hash>: <bytes> bytes to <n>
    /// peers" (stderr).
    fn report(&self) {
        for (info_hash, (bytes, peers)) in self.0.borrow().iter() {
            if *bytes > 0 {
                eprintln!(
                    "served {info_hash}: {bytes} bytes ({}) to {}",
                    progress::human_bytes(*bytes),
                    progress::peers(*peers)
                );
            }
        }
    }
}

/// Serves shares until stopped, saying who connects.
async fn serve(
    events: &mut mpsc::Receiver<NodeEvent>,
    served: &Served,
) -> anyhow::Result<ExitCode> {
    eprintln!("seeding; press Ctrl-C to stop");
    loop {
        match events.recv().await {
            Some(NodeEvent::UploadProgress(p)) => served.note(&p),
            Some(NodeEvent::PeerConnected {
                peer,
                candidate_type,
                ..
            }) => {
                eprintln!("peer {} connected ({candidate_type})", peer.short());
            }
            Some(NodeEvent::ShareStopped { info_hash, reason }) => {
                eprintln!(
                    "stopped sharing {}: {}",
                    info_hash.short(),
                    inert(&reason, usize::MAX)
                );
            }
            Some(NodeEvent::Connection(ConnectionState::Disconnected {
                reason, retry_in, ..
            })) => {
                eprintln!(
                    "signaling server lost ({}); retrying in {}s",
                    inert(&reason, usize::MAX),
                    retry_in.as_secs()
                );
            }
            Some(_) => {}
            None => bail!("the node stopped"),
        }
    }
}

/// Shows a download's progress until it completes (prints the path on stdout) or fails.
async fn follow(
    events: &mut mpsc::Receiver<NodeEvent>,
    transfer: shoal_node::TransferId,
) -> anyhow::Result<ExitCode> {
    let mut bar: Option<progress::Transfer> = None;
    // What this download served to other viewers: (bytes, peers).
    let mut served = (0u64, 0usize);
    loop {
        match events.recv().await {
            Some(NodeEvent::DownloadStarted {
                transfer: t,
                name,
                len_bytes,
                resumed_bytes,
                ..
            }) if t == transfer => {
                let name = inert(&name, NAME_CHARS);
                if resumed_bytes > 0 {
                    eprintln!(
                        "resuming {name}: {resumed_bytes} of {len_bytes} bytes already verified"
                    );
                }
                bar = Some(progress::Transfer::new(&name, len_bytes));
            }
            Some(NodeEvent::DownloadProgress(p)) if p.transfer == transfer => {
                served = (p.sent_bytes, p.peers_served);
                if let Some(bar) = &bar {
                    bar.update(&p);
                }
            }
            Some(NodeEvent::PeerConnected {
                transfer: Some(t),
                peer,
                candidate_type,
                ..
            }) if t == transfer => {
                progress::note(
                    &bar,
                    &format!("peer {} connected ({candidate_type})", peer.short()),
                );
            }
            Some(NodeEvent::PeerBanned {
                transfer: t,
                peer,
                reason,
            }) if t == transfer => {
                progress::note(&bar, &format!("peer {} banned: {reason}", peer.short()));
            }
            Some(NodeEvent::Completed {
                transfer: t,
                path,
                summary,
                ..
            }) if t == transfer => {
                if let Some(bar) = bar.take() {
                    bar.finish();
                }
                let secs = summary.elapsed.as_secs_f64().max(1e-3);
                eprintln!(
                    "fetched {} bytes from {} in {:.1} s ({:.1} MiB/s); resumed {} bytes; peak RSS {}",
                    summary.fetched_bytes,
                    progress::peers(summary.per_peer_bytes.len()),
                    secs,
                    summary.fetched_bytes as f64 / secs / (1024.0 * 1024.0),
                    summary.resumed_bytes,
                    progress::peak_rss()
                        .map(progress::human_bytes)
                        .unwrap_or_else(|| "unknown".into()),
                );
                for (peer, bytes) in &summary.per_peer_bytes {
                    eprintln!("  from {}: {bytes} bytes", peer.short());
                }
                // Bytes without a whole piece are the protocol's own (bitfield, have).
                if served.1 > 0 {
                    eprintln!(
                        "served {} bytes to {} while downloading",
                        served.0,
                        progress::peers(served.1)
                    );
                }
                println!("{}", path.display());
                return Ok(ExitCode::SUCCESS);
            }
            Some(NodeEvent::Failed {
                transfer: t,
                reason,
                ..
            }) if t == transfer => {
                if let Some(bar) = bar.take() {
                    bar.abandon();
                }
                bail!("download failed: {reason}");
            }
            Some(_) => {}
            None => bail!("the node stopped"),
        }
    }
}
