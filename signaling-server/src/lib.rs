//! Shoal's bundled signaling server: lib `serve(listener, config)` and bin `shoal-signal`.
//!
//! The server speaks the protocol of `docs/protocol.md` (types in `shoal-protocol`): it
//! assigns anonymous node ids, keeps the file index in memory, answers list, search and
//! lookup, relays SDP offers/answers and ICE candidates between nodes (stamping the sender
//! from the connection), pings clients and drops the silent ones (seeds 001, 003, 004).
//! It never sees file bytes.
//!
//! Architecture invariants:
//! - Memory is bounded per connection and overall. Relayed signals wait in per-client queues
//!   bounded in messages and bytes, and all queues together are bounded in bytes
//!   ([`Config::max_queued_bytes_total`]); what does not fit is refused to its sender.
//!   WebSocket buffers are small (4 KiB read, eager writes): 10,000 idle clients measured
//!   97 MiB of resident memory (about 10 KiB each).
//! - What one client can cost is bounded: connections per address, a `hello` deadline, rate
//!   limits on index changes and queries, one query running at a time, and a reserve of
//!   connections for `status` monitors when the server is full.
//! - A search never delays a relay: the file index and the relay path have separate locks.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = shoal_signal::serve(listener, shoal_signal::Config::default())?;
//! println!("{}", server.url());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod config;
mod connection;
mod index;
mod limits;
mod registry;
mod rooms;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tracing::{debug, info, warn};

pub use config::{Config, ConfigError, ConfigOverlay};
pub use shoal_protocol::ServerStatus;
use shoal_protocol::ServerToClient;

use index::Index;
use limits::{AddressBuckets, Connections};
use registry::{QueueLimits, QueuedBytes, Registry};
use rooms::{Change, Rooms};

/// How long [`ServerHandle::shutdown`] waits for clients to take their close frame.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// File descriptors kept free of connections: the listener, the runtime, reading /proc for
/// the status line, and whatever else the embedding program opens.
const SPARE_FDS: usize = 64;

/// How often `index_changed` notices may go out at most (coalescing window): the first
/// change is told at once, later ones at most once per interval, to every node at once.
const INDEX_NOTICE_INTERVAL: Duration = Duration::from_secs(1);

// Index changes (`announce`, `unannounce`) one connection may make in a burst, and per
// second after it (docs/protocol.md §2). 64 covers announcing 2,000 files at start; nodes
// pace themselves by the same figures.
use shoal_protocol::{INDEX_CHANGES_BURST, INDEX_CHANGES_PER_SEC};

/// `list` and `search` requests one connection may make in a burst, and per second after it.
const QUERIES_BURST: u32 = 20;
/// See [`QUERIES_BURST`].
const QUERIES_PER_SEC: f64 = 10.0;

/// `list` and `search` requests from one IP address over all its connections, in a burst and
/// per second after it: reconnecting does not buy a new budget.
const ADDRESS_QUERIES_BURST: u32 = 40;
/// See [`ADDRESS_QUERIES_BURST`].
const ADDRESS_QUERIES_PER_SEC: f64 = 20.0;

/// `join_room` attempts one connection may make in a burst, and per second after it: with
/// 40-bit codes, guessing one is hopeless at this rate (docs/protocol.md §8).
const ROOM_JOINS_BURST: u32 = 5;
/// See [`ROOM_JOINS_BURST`].
const ROOM_JOINS_PER_SEC: f64 = 0.2;
/// `join_room` attempts from one IP address over all its connections, in a burst and per
/// second after it.
const ADDRESS_ROOM_JOINS_BURST: u32 = 10;
/// See [`ADDRESS_ROOM_JOINS_BURST`].
const ADDRESS_ROOM_JOINS_PER_SEC: f64 = 0.2;
/// Room messages (`create_room`, `leave_room`, `room_send`) one connection may send in a
/// burst, and per second after it: a member sends a clock ping every 2 s and its state about
/// once a second; a host one answer per ping and a playback change now and then.
const ROOM_MESSAGES_BURST: u32 = 64;
/// See [`ROOM_MESSAGES_BURST`].
const ROOM_MESSAGES_PER_SEC: f64 = 40.0;

/// State shared by the accept loop, every connection task and the handle.
struct Shared {
    config: Config,
    /// Connected nodes and the relay path.
    registry: std::sync::Mutex<Registry>,
    /// The file index, apart from the relay path.
    index: std::sync::RwLock<Index>,
    /// One `list` or `search` runs at a time; others wait their turn (asynchronously), so
    /// queries can never take every runtime thread from the relay.
    query_permits: Semaphore,
    /// Wakes the `index_changed` broadcaster; `notify_one` keeps a permit, so no change is
    /// missed between two broadcasts.
    index_changed: Notify,
    /// The index revision last told to nodes; each connection watches it.
    revision_tx: watch::Sender<u64>,
    /// Open connections, in total and per address.
    connections: Connections,
    /// Query budgets per address.
    address_queries: AddressBuckets,
    /// `join_room` budgets per address.
    address_joins: AddressBuckets,
    /// Rooms, apart from the index and the relay path.
    rooms: std::sync::Mutex<Rooms>,
    /// Bytes of relayed signals queued over all clients.
    queued_total: Arc<QueuedBytes>,
    started: Instant,
    status_tx: watch::Sender<ServerStatus>,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock is a bug in this crate; keep serving with the data
        // as it is rather than taking every connection down with it.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tells members about room changes (after the rooms lock is released). A member whose
    /// queue is full misses it; the next change or its own next message brings it up to
    /// date.
    fn tell(&self, changes: Vec<Change>) {
        for change in changes {
            let (message, notify) = match change {
                Change::Members {
                    code,
                    host,
                    members,
                    notify,
                } => (
                    ServerToClient::RoomMembers {
                        room: code,
                        host,
                        members,
                    },
                    notify,
                ),
                Change::Closed {
                    code,
                    reason,
                    notify,
                } => (ServerToClient::RoomClosed { room: code, reason }, notify),
            };
            self.relay_to(&notify, &message);
        }
    }

    /// Queues `message` for each of `nodes`; failures are skipped.
    fn relay_to(&self, nodes: &[shoal_protocol::NodeId], message: &ServerToClient) {
        let Ok(text) = serde_json::to_string(message) else {
            return;
        };
        let mut registry = self.registry();
        for node in nodes {
            let _ = registry.relay(
                *node,
                tokio_tungstenite::tungstenite::Message::text(text.clone()),
            );
        }
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The figures now, with the relay rate of the last sampled interval.
    fn current_status(&self) -> ServerStatus {
        let rate = self.status_tx.borrow().relayed_per_sec;
        self.status(rate)
    }

    fn status(&self, relayed_per_sec: f64) -> ServerStatus {
        // Read /proc before taking the lock every relay needs.
        let rss_bytes = status::resident_memory_bytes().unwrap_or(0);
        let (files, holders) = {
            let index = self.index();
            (index.file_count() as u64, index.holder_count())
        };
        let registry = self.registry();
        ServerStatus {
            nodes: registry.node_count() as u64,
            files,
            holders,
            relayed_total: registry.relayed_total(),
            relayed_per_sec,
            rss_bytes,
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}

/// A running server. [`ServerHandle::shutdown`] stops it gracefully; dropping the handle
/// stops it too (clients get close code 1001) without waiting.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    /// Closed when the accept loop and every connection task have ended.
    done_rx: mpsc::Receiver<()>,
}

impl ServerHandle {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://<local address>` for clients on this machine.
    pub fn url(&self) -> String {
        format!("ws://{}", self.local_addr)
    }

    /// The current figures. `relayed_per_sec` is the rate over the last
    /// [`Config::status_interval`].
    pub fn status(&self) -> ServerStatus {
        self.shared.current_status()
    }

    /// A receiver that sees new figures once per [`Config::status_interval`].
    pub fn status_updates(&self) -> watch::Receiver<ServerStatus> {
        self.shared.status_tx.subscribe()
    }

    /// Stops accepting, closes every client with close code 1001 (going away) and waits for
    /// them, at most about 1.5 s; the index is then empty.
    pub async fn shutdown(mut self) {
        info!("shutting down");
        let _ = self.shutdown_tx.send(true);
        // Every task holds a clone of the sender; recv() returns None when all are gone.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_millis(300), async {
            while self.done_rx.recv().await.is_some() {}
        })
        .await;
        self.shared.registry().clear();
        self.shared.index_mut().clear();
    }
}

/// Starts serving WebSocket clients on `listener`, on the current tokio runtime.
///
/// Returns at once; the server runs in spawned tasks until [`ServerHandle::shutdown`].
///
/// # Errors
/// The listener's local address cannot be read.
///
/// # Panics
/// When called outside a tokio runtime.
pub fn serve(listener: TcpListener, mut config: Config) -> std::io::Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let fit = connections_that_fit(config.monitor_reserve);
    if fit < config.max_connections {
        info!(
            max_connections = fit,
            "the open-file limit lowers the connection limit"
        );
        config.max_connections = fit;
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel::<()>(1);
    let (status_tx, _) = watch::channel(ServerStatus::default());
    let queued_total = Arc::new(QueuedBytes::default());
    let limits = QueueLimits {
        per_client_bytes: config.max_queued_bytes_per_client,
        total_bytes: config.max_queued_bytes_total,
    };
    let shared = Arc::new(Shared {
        registry: std::sync::Mutex::new(Registry::new(limits, queued_total.clone())),
        index: std::sync::RwLock::new(Index::default()),
        query_permits: Semaphore::new(1),
        config,
        index_changed: Notify::new(),
        revision_tx: watch::channel(0).0,
        connections: Connections::default(),
        address_queries: AddressBuckets::default(),
        address_joins: AddressBuckets::default(),
        rooms: std::sync::Mutex::new(Rooms::default()),
        queued_total,
        started: Instant::now(),
        status_tx,
    });
    info!(%local_addr, "signaling server listening");
    tokio::spawn(accept_loop(
        listener,
        shared.clone(),
        shutdown_rx.clone(),
        done_tx.clone(),
    ));
    tokio::spawn(broadcast_index_changes(
        shared.clone(),
        shutdown_rx.clone(),
        done_tx.clone(),
    ));
    tokio::spawn(sample_status(shared.clone(), shutdown_rx, done_tx));
    Ok(ServerHandle {
        local_addr,
        shared,
        shutdown_tx,
        done_rx,
    })
}

/// Nodes that fit under this process's open-file limit once the monitor reserve and
/// [`SPARE_FDS`] are set aside (the embedding app's limit as much as `shoal-signal`'s).
fn connections_that_fit(monitor_reserve: usize) -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(monitor_reserve + SPARE_FDS)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    done: mpsc::Sender<()>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let config = &shared.config;
                    let Some(slot) = shared.connections.admit(
                        addr.ip(),
                        config.max_connections,
                        config.monitor_reserve,
                        config.max_connections_per_address,
                    ) else {
                        // Closing at once costs the least; a handshake would hold the socket.
                        debug!(%addr, "connection refused: address or server at its limit");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    debug!(%addr, admission = ?slot.admission, "accepted");
                    tokio::spawn(connection::run(
                        stream,
                        addr,
                        slot,
                        shared.clone(),
                        shutdown.clone(),
                        done.clone(),
                    ));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    debug!("accept loop stopped");
}

/// Sends `index_changed` to every client after changes, at most once per
/// [`INDEX_NOTICE_INTERVAL`], carrying the latest revision.
async fn broadcast_index_changes(
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = shared.index_changed.notified() => {}
        }
        let revision = shared.index().revision();
        shared.revision_tx.send_if_modified(|told| {
            let changed = *told != revision;
            *told = revision;
            changed
        });
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(INDEX_NOTICE_INTERVAL) => {}
        }
    }
}

/// Publishes the figures once per [`Config::status_interval`], with the relay rate over that
/// interval.
async fn sample_status(
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
) {
    let interval = shared.config.status_interval;
    let mut last_total = 0u64;
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(interval) => {}
        }
        shared.address_queries.prune(std::time::Instant::now());
        shared.address_joins.prune(std::time::Instant::now());
        let total = shared.registry().relayed_total();
        let now = Instant::now();
        let secs = now.duration_since(last_at).as_secs_f64().max(1e-3);
        let rate = (total - last_total) as f64 / secs;
        last_total = total;
        last_at = now;
        let status = shared.status(rate);
        shared.status_tx.send_replace(status);
    }
}
