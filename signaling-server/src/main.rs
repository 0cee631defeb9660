//! `shoal-signal`: the bundled signaling server as a standalone program.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use shoal_protocol::IceServer;
use shoal_signal::{Config, ConfigOverlay, ServerStatus};

/// Shoal's signaling server: nodes find each other here and exchange WebRTC offers, answers and
/// ICE candidates. File bytes never pass through it.
///
/// Prints the bound `ws://` URL as the first line on stdout, then a status line on stderr
/// every status interval. SIGINT or SIGTERM closes every client (code 1001) and exits 0.
#[derive(Debug, Parser)]
#[command(name = "shoal-signal", version)]
struct Args {
    /// Address and port to listen on; port 0 picks a free port. Use 0.0.0.0 to accept
    /// nodes from other machines. [default: 127.0.0.1:7878, or `listen` from --config]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// TOML config file with listen, heartbeat, status_interval, max_files_per_node and
    /// [[ice_servers]] (see docs/protocol.md). Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// STUN server URL told to nodes, e.g. stun:stun.l.google.com:19302. Repeatable.
    #[arg(long, value_name = "URL")]
    stun: Vec<String>,

    /// TURN server URL told to nodes, e.g. turn:turn.example.org:3478. Repeatable.
    #[arg(long, value_name = "URL")]
    turn: Vec<String>,

    /// User name for the --turn servers.
    #[arg(long, value_name = "NAME", requires = "turn")]
    turn_username: Option<String>,

    /// Password for the --turn servers.
    #[arg(long, value_name = "SECRET", requires = "turn")]
    turn_credential: Option<String>,

    /// How often to ping each client; a client silent for three intervals is dropped
    /// (e.g. 15s, 500ms). [default: 15s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    heartbeat: Option<Duration>,

    /// How often to print the status line on stderr. [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    status_interval: Option<Duration>,

    /// Most files one node may have in the index. [default: 1000]
    #[arg(long, value_name = "N")]
    max_files_per_node: Option<usize>,

    /// Most open connections from one IP address; more are closed at once. Raise it when
    /// many nodes share one address (a NAT, a reverse proxy, a load test). [default: 64]
    #[arg(long, value_name = "N")]
    max_connections_per_address: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    // Defaults, then the file, then the flags: each overlay sets what it names.
    let file = match &args.config {
        Some(path) => ConfigOverlay::load(path)?,
        None => ConfigOverlay::default(),
    };
    let flags = flags_overlay(&args);
    let mut config = Config::default();
    for overlay in [&file, &flags] {
        overlay.apply(&mut config);
    }
    let listen = flags
        .listen
        .or(file.listen)
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7878)));

    // Each client holds a socket; the default soft limit of 1024 would cap the server there
    // (`serve` fits its connection limit under whatever limit there is).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit raised"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(listen, config))
}

/// What the flags set, as an overlay on the config file's.
fn flags_overlay(args: &Args) -> ConfigOverlay {
    ConfigOverlay {
        listen: args.listen,
        heartbeat: args.heartbeat,
        status_interval: args.status_interval,
        max_files_per_node: args.max_files_per_node,
        max_connections_per_address: args.max_connections_per_address,
        ice_servers: IceServer::from_flags(
            &args.stun,
            &args.turn,
            args.turn_username.as_deref(),
            args.turn_credential.as_deref(),
        ),
    }
}

async fn run(listen: SocketAddr, config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let server = shoal_signal::serve(listener, config)?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", server.url())?;
        out.flush()?;
    }

    let mut updates = server.status_updates();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            changed = updates.changed() => {
                if changed.is_err() {
                    break;
                }
                let status = updates.borrow_and_update().clone();
                eprintln!("{}", status_line(&status));
            }
        }
    }
    server.shutdown().await;
    Ok(())
}

fn status_line(s: &ServerStatus) -> String {
    format!(
        "status: {} nodes, {} files, {} holders, {} relayed ({:.1}/s), rss {:.1} MiB, up {}s",
        s.nodes,
        s.files,
        s.holders,
        s.relayed_total,
        s.relayed_per_sec,
        s.rss_bytes as f64 / (1024.0 * 1024.0),
        s.uptime_ms / 1000
    )
}
