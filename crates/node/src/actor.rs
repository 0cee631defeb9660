//! The node's actor: owns shares, downloads, pending server requests and the peer connections
//! being set up; routes signaling messages; starts swarm tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_protocol::{
    Category, ClientToServer, ConnectionId, ErrorCode, FileAnnouncement, IceServer, IndexedFile,
    InfoHash, NodeId, ServerToClient, Signal,
};
use shoal_rtc::{DataLink, OutgoingSignal, PeerLink, RtcConfig};
use shoal_storage::{FileStamp, HashCache, Manifest, SourceFile, StorageError, safe_file_name};
use shoal_transfer::SwarmConfig;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::announce::{AnnouncePacer, Change};
use crate::book::TransferBook;
use crate::events::{
    ConnectionState, DownloadProgress, FailureCause, NodeEvent, RoomEvent, SharedFile, TransferId,
    TransferStatus,
};
use crate::limit::{Limits, RateLimit};
use crate::media::MediaServer;
use crate::policy::{GiveUp, HolderPolicy};
use crate::signaling::{self, SignalingEvent};
use crate::stream::Stream;
use crate::swarm_task::{self, SwarmCommand, SwarmEnded, SwarmSpec};
use crate::{Command, NodeConfig, NodeError};

/// Peer connections being set up at once on behalf of other nodes (answers to their
/// offers), in total and per node; offers beyond are ignored.
const MAX_INBOUND_SETUPS: usize = 32;
const MAX_INBOUND_SETUPS_PER_PEER: usize = 4;

/// How often downloads look for new holders and check that they still have a source.
const REFRESH_INTERVAL: Duration = Duration::from_secs(3);

/// Messages from tasks the actor started.
pub(crate) enum Internal {
    /// A download's file is complete at `path` (told before its `Completed` event, so that
    /// a front end that reacts to the event can play the file at once).
    Finished {
        info_hash: InfoHash,
        path: PathBuf,
    },
    Hashed {
        path: PathBuf,
        /// The manifest, the open source and the MIME type.
        result: Result<(Manifest, SourceFile, String), StorageError>,
        reply: oneshot::Sender<Result<SharedFile, NodeError>>,
    },
    LinkReady {
        connection_id: ConnectionId,
        peer: NodeId,
        info_hash: InfoHash,
        transfer: Option<TransferId>,
        link: PeerLink,
        data: DataLink,
    },
    LinkFailed {
        connection_id: ConnectionId,
        peer: NodeId,
        transfer: Option<TransferId>,
        reason: String,
    },
    /// A link of a download closed (the swarm task says so); `failure` says what the peer
    /// did wrong, `None` when the link ended through no fault of the peer's.
    LinkClosed {
        transfer: TransferId,
        peer: NodeId,
        failure: Option<crate::events::PeerFault>,
    },
    PeerBanned {
        transfer: TransferId,
        peer: NodeId,
        reason: crate::CloseReason,
    },
    SwarmEnded(SwarmEnded),
    /// A download knows its manifest: it can serve what it verifies (a partial holder).
    ManifestKnown {
        transfer: TransferId,
    },
    /// A live stream's link to a viewer ended.
    LiveViewerEnded {
        peer: NodeId,
        connection_id: ConnectionId,
    },
    /// The link of a live stream this node watched ended.
    LiveWatchEnded {
        connection_id: ConnectionId,
    },
    /// A download completed and its swarm task now serves the finished file.
    Seeding {
        transfer: TransferId,
        info_hash: InfoHash,
        path: PathBuf,
        mime: String,
        /// The file's length from the manifest, in bytes.
        len_bytes: u64,
    },
}

enum Pending {
    Reply(oneshot::Sender<Result<ServerToClient, NodeError>>),
    Announce(Vec<InfoHash>),
    DownloadLookup {
        info_hash: InfoHash,
        out_dir: PathBuf,
        reply: oneshot::Sender<Result<TransferStatus, NodeError>>,
    },
    Refresh(TransferId),
    /// Joining a room again after a reconnect: its code.
    Rejoin(String),
}

/// Which side of the offer/answer exchange a new peer connection is on.
enum Setup {
    /// We download: offer a data channel labelled with this content.
    Offer(InfoHash),
    /// A peer offered (this SDP): we answer.
    Answer(String),
}

struct Share {
    file: SharedFile,
    swarm: mpsc::UnboundedSender<SwarmCommand>,
    announced: bool,
    waiting: Vec<oneshot::Sender<Result<SharedFile, NodeError>>>,
}

struct Download {
    info_hash: InfoHash,
    swarm: mpsc::UnboundedSender<SwarmCommand>,
    /// Which holders to connect to, when to retry, when to give up.
    policy: HolderPolicy,
    /// Where it stands, written by its swarm task (also in the node's [`TransferBook`]).
    status: tokio::sync::watch::Sender<TransferStatus>,
    /// The index entry it started from: what it is announced as while it serves its pieces.
    entry: IndexedFile,
    /// It knows the manifest and is announced (or queued) as a partial holder.
    holds: bool,
    /// What players stream from it ([`crate::stream`]).
    stream: Arc<Stream>,
    /// Its file name (safe).
    name: String,
}

pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Actor {
    config: NodeConfig,
    events: mpsc::Sender<NodeEvent>,
    to_server: mpsc::Sender<ClientToServer>,
    /// Unbounded on purpose: tasks report here and must never block on the actor (the actor
    /// also sends to them); the messages are few (one per link event or task end).
    internal_tx: mpsc::UnboundedSender<Internal>,
    node_id: Option<NodeId>,
    server_ice: Vec<IceServer>,
    next_request: u64,
    pending: HashMap<u64, Pending>,
    shares: HashMap<InfoHash, Share>,
    next_transfer: u64,
    downloads: HashMap<TransferId, Download>,
    /// Every download's status, shared with the node's handles.
    book: TransferBook,
    /// Remote signals for peer connections being set up, by connection id.
    connecting: HashMap<ConnectionId, mpsc::Sender<Signal>>,
    /// Answers being set up, per offering node.
    inbound_setups: HashMap<NodeId, usize>,
    /// Info hashes whose download lookup is under way (a second download waits for none).
    looking_up: HashSet<InfoHash>,
    /// Finished downloads of this node's life, for the media server.
    completed: HashMap<InfoHash, PathBuf>,
    /// Started on first use.
    media: Option<MediaServer>,
    /// Shares waiting to be announced within the server's rate.
    pacer: AnnouncePacer,
    /// The node's bandwidth caps, shared by every swarm task.
    limits: Limits,
    /// The start of the node's room clock ([`crate::NodeHandle::clock_ms`]).
    epoch: std::time::Instant,
    /// The rooms this node is in, by code, with the host key of those it hosts: joined
    /// again on every new signaling connection.
    rooms: BTreeMap<String, Option<String>>,
    /// Rooms whose rejoin was refused for now (rate-limited, busy): tried again on the
    /// next refresh tick.
    rejoin_later: BTreeSet<String>,
    /// Each room's host and members, as the server last said (live mode streams to them).
    room_members: HashMap<String, (Option<NodeId>, Vec<NodeId>)>,
    /// The live stream this node hosts (issue 12).
    live: Option<LiveHost>,
    /// Signals of live media links, by connection (they trickle for the link's life).
    live_routes: HashMap<ConnectionId, mpsc::Sender<Signal>>,
    /// The live streams this node watches, by host: one link each, at most
    /// [`MAX_LIVE_WATCHES`].
    live_watches: HashMap<NodeId, (ConnectionId, tokio::task::JoinHandle<()>)>,
    /// Where this node's front ends hear the live streams it watches.
    live_out: tokio::sync::broadcast::Sender<crate::live::LiveEvent>,
}

/// Live streams a node watches at once (each a peer connection with its sockets).
const MAX_LIVE_WATCHES: usize = 2;

/// A live stream this node hosts in a room.
struct LiveHost {
    room: String,
    codecs: Vec<shoal_rtc::MediaCodec>,
    frames: tokio::sync::broadcast::Sender<crate::live::LiveItem>,
    /// True once the file ended or the stream was stopped: no new links; viewers finish
    /// with a `bye`.
    over: tokio::sync::watch::Sender<bool>,
    pacer: tokio::task::JoinHandle<()>,
    /// Each viewer's link task (it ends by itself once `over`, and reports
    /// `LiveViewerEnded`).
    viewers: HashMap<NodeId, (ConnectionId, tokio::task::JoinHandle<()>)>,
}

impl Drop for LiveHost {
    fn drop(&mut self) {
        self.pacer.abort();
        self.over.send_replace(true);
    }
}

pub(crate) async fn run(
    config: NodeConfig,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NodeEvent>,
    epoch: std::time::Instant,
    book: TransferBook,
    live_out: tokio::sync::broadcast::Sender<crate::live::LiveEvent>,
) {
    let (to_server, server_rx) = mpsc::channel(256);
    let (from_server_tx, mut from_server) = mpsc::channel(256);
    tokio::spawn(signaling::run(
        config.server_url.clone(),
        config.agent.clone(),
        server_rx,
        from_server_tx,
        events.clone(),
    ));
    let (internal_tx, mut internal) = mpsc::unbounded_channel();
    let (config_upload, config_download) = (
        config.max_upload_bytes_per_sec,
        config.max_download_bytes_per_sec,
    );
    let mut actor = Actor {
        config,
        events,
        to_server,
        internal_tx,
        node_id: None,
        server_ice: Vec::new(),
        next_request: 1,
        pending: HashMap::new(),
        shares: HashMap::new(),
        next_transfer: 1,
        downloads: HashMap::new(),
        book,
        connecting: HashMap::new(),
        completed: HashMap::new(),
        media: None,
        inbound_setups: HashMap::new(),
        looking_up: HashSet::new(),
        pacer: AnnouncePacer::new(Instant::now()),
        limits: Limits {
            upload: RateLimit::new(config_upload),
            download: RateLimit::new(config_download),
        },
        epoch,
        rooms: BTreeMap::new(),
        rejoin_later: BTreeSet::new(),
        room_members: HashMap::new(),
        live: None,
        live_routes: HashMap::new(),
        live_watches: HashMap::new(),
        live_out,
    };
    let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Only while connected: offline, nothing may be sent (and `Connected` announces all).
        let announce_at = actor.node_id.and(actor.pacer.next_send());
        tokio::select! {
            // Tasks' reports first: one sent before an event a front end reacts to (a
            // finished file) is known before the front end's command about it.
            biased;
            Some(message) = internal.recv() => actor.on_internal(message).await,
            command = commands.recv() => match command {
                Some(Command::Shutdown { reply }) => {
                    actor.shutdown().await;
                    let _ = reply.send(());
                    return;
                }
                Some(command) => actor.on_command(command).await,
                // Every handle dropped.
                None => {
                    actor.shutdown().await;
                    return;
                }
            },
            Some(event) = from_server.recv() => actor.on_signaling(event).await,
            _ = refresh.tick() => {
                actor.refresh_downloads();
                actor.rejoin_rooms_later();
            }
            () = sleep_until(announce_at), if announce_at.is_some() => actor.send_announcements(),
        }
    }
}

/// Sleeps until `at`; `None` never ends (its `select!` branch is disabled anyway).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    fn rtc_config(&self) -> RtcConfig {
        let mut rtc = self.config.rtc.clone();
        rtc.ice_servers.extend(self.server_ice.iter().cloned());
        rtc
    }

    async fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event).await;
    }

    /// Sends a request with a fresh id; the answer is routed to `pending`.
    fn request(&mut self, mut message: ClientToServer, pending: Pending) {
        if self.node_id.is_none() {
            let url = self.config.server_url.clone();
            self.fail_pending(pending, || NodeError::NotConnected { url: url.clone() });
            return;
        }
        let id = self.next_request;
        self.next_request += 1;
        self.pending.insert(id, pending);
        message.set_request_id(id);
        // Never wait on the signaling task: it may itself be waiting to hand us a message.
        if self.to_server.try_send(message).is_err()
            && let Some(p) = self.pending.remove(&id)
        {
            let url = self.config.server_url.clone();
            self.fail_pending(p, || NodeError::NotConnected { url: url.clone() });
        }
    }

    fn fail_pending(&mut self, pending: Pending, error: impl Fn() -> NodeError) {
        match pending {
            Pending::Reply(reply) => {
                let _ = reply.send(Err(error()));
            }
            Pending::DownloadLookup {
                info_hash, reply, ..
            } => {
                self.looking_up.remove(&info_hash);
                let _ = reply.send(Err(error()));
            }
            Pending::Announce(hashes) => {
                for h in &hashes {
                    if let Some(share) = self.shares.get_mut(h) {
                        share.announced = false;
                    }
                }
                // Not sent (the queue to the server was full) or lost with the connection:
                // queued again (a new connection resets the queue and announces all).
                self.pacer.refused(Instant::now(), hashes);
            }
            Pending::Refresh(_) => {}
            // Not sent: tried again on the next refresh (or the next connection).
            Pending::Rejoin(code) => {
                self.rejoin_later.insert(code);
            }
        }
    }

    // ----- commands -----

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Share { path, reply } => self.share(path, reply),
            Command::Unshare { info_hash, reply } => {
                let result = self.unshare(info_hash, None).await;
                let _ = reply.send(result);
            }
            Command::Shares { reply } => {
                let mut files: Vec<SharedFile> =
                    self.shares.values().map(|s| s.file.clone()).collect();
                files.sort_by(|a, b| a.name.cmp(&b.name));
                let _ = reply.send(files);
            }
            Command::Request { message, reply } => self.request(message, Pending::Reply(reply)),
            Command::GoLive {
                room,
                path,
                looping,
                reply,
            } => {
                let result = self.go_live(room, path, looping).await;
                let _ = reply.send(result);
            }
            Command::StopLive { reply } => {
                self.live = None;
                let _ = reply.send(());
            }
            Command::Post { message, reply } => {
                if let ClientToServer::LeaveRoom { room } = &message {
                    self.rooms.remove(room);
                    self.rejoin_later.remove(room);
                    self.forget_room_live(room);
                }
                let result = if self.node_id.is_none() {
                    Err(NodeError::NotConnected {
                        url: self.config.server_url.clone(),
                    })
                } else {
                    // Never wait on the signaling task: it may itself be waiting for us.
                    self.to_server
                        .try_send(message)
                        .map_err(|_| NodeError::NotConnected {
                            url: self.config.server_url.clone(),
                        })
                };
                let _ = reply.send(result);
            }
            Command::Download {
                info_hash,
                out_dir,
                reply,
            } => {
                // A download whose swarm task ended (its outcome may be told before the
                // actor hears of the end) no longer counts: Try again right after a failure
                // must work.
                if self.looking_up.contains(&info_hash)
                    || self
                        .downloads
                        .values()
                        .any(|d| d.info_hash == info_hash && d.status.borrow().is_running())
                {
                    let _ = reply.send(Err(NodeError::AlreadyDownloading { info_hash }));
                    return;
                }
                let out_dir = out_dir.unwrap_or_else(|| self.config.download_dir.clone());
                self.looking_up.insert(info_hash);
                self.request(
                    ClientToServer::Lookup {
                        info_hash,
                        request_id: None,
                    },
                    Pending::DownloadLookup {
                        info_hash,
                        out_dir,
                        reply,
                    },
                );
            }
            Command::Cancel { transfer, reply } => {
                let Some(download) = self.downloads.get(&transfer) else {
                    let _ = reply.send(Err(NodeError::UnknownTransfer(transfer.0)));
                    return;
                };
                let _ = download.swarm.send(SwarmCommand::Cancel);
                let _ = reply.send(Ok(()));
            }
            Command::NodeId { reply } => {
                let _ = reply.send(self.node_id);
            }
            Command::MediaUrl { path, reply } => {
                let _ = reply.send(self.media_url(path).await);
            }
            Command::StreamUrl { transfer, reply } => {
                let _ = reply.send(self.stream_url(transfer).await);
            }
            Command::LiveUrl { reply } => {
                let _ = reply.send(self.media_server().await.map(|m| m.live_url()));
            }
            Command::PieceMap { transfer, reply } => match self.downloads.get(&transfer) {
                // The swarm task answers: it owns the pieces.
                Some(d) => {
                    if let Err(mpsc::error::SendError(SwarmCommand::PieceMap(reply))) =
                        d.swarm.send(SwarmCommand::PieceMap(reply))
                    {
                        let _ = reply.send(Err(NodeError::UnknownTransfer(transfer.0)));
                    }
                }
                None => {
                    let _ = reply.send(Err(NodeError::UnknownTransfer(transfer.0)));
                }
            },
            Command::SetLimits { limits, reply } => {
                self.limits.upload.set(limits.max_upload_bytes_per_sec);
                self.limits.download.set(limits.max_download_bytes_per_sec);
                self.config.max_upload_bytes_per_sec = limits.max_upload_bytes_per_sec;
                self.config.max_download_bytes_per_sec = limits.max_download_bytes_per_sec;
                self.config.share_completed = limits.share_completed;
                let _ = reply.send(());
            }
            Command::Shutdown { .. } => unreachable!("`run` handles Shutdown before dispatch"),
        }
    }

    fn share(&mut self, path: PathBuf, reply: oneshot::Sender<Result<SharedFile, NodeError>>) {
        let events = self.events.clone();
        let internal = self.internal_tx.clone();
        let cache = self.config.hash_cache.clone().map(HashCache::new);
        tokio::spawn(async move {
            let hashed_path = path.clone();
            let result = tokio::task::spawn_blocking(move || {
                let path = hashed_path;
                let meta = std::fs::metadata(&path).map_err(|e| StorageError::io(&path, e))?;
                let len_bytes = meta.len();
                // Taken before hashing: a file written meanwhile never matches its entry.
                let stamp = FileStamp::of(&meta);
                let remembered = cache.as_ref().and_then(|c| c.get(&path, stamp));
                let manifest = match remembered {
                    Some(manifest) => {
                        debug!(path = %path.display(), "manifest remembered; not hashing");
                        let _ = events.try_send(NodeEvent::HashingProgress {
                            path: path.clone(),
                            bytes_done: len_bytes,
                            len_bytes,
                        });
                        manifest
                    }
                    None => {
                        let mut last = 0u64;
                        let manifest = shoal_storage::hash_file(&path, &mut |done| {
                            // About every 16 MiB and at the end; dropped if the front end lags.
                            if done - last >= 16 << 20 || done == len_bytes {
                                last = done;
                                let _ = events.try_send(NodeEvent::HashingProgress {
                                    path: path.clone(),
                                    bytes_done: done,
                                    len_bytes,
                                });
                            }
                            !events.is_closed()
                        })?;
                        if let Some(cache) = &cache
                            && let Err(e) = cache.put(&path, stamp, &manifest)
                        {
                            warn!(error = %e, "cannot remember the manifest; it will be hashed again next time");
                        }
                        manifest
                    }
                };
                let source = SourceFile::open(&path, &manifest)?;
                let mime = crate::media_type::media_type(&path);
                Ok((manifest, source, mime))
            })
            .await
            .unwrap_or_else(|e| {
                Err(StorageError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
            let _ = internal.send(Internal::Hashed {
                path,
                result,
                reply,
            });
        });
    }

    async fn on_hashed(
        &mut self,
        path: PathBuf,
        result: Result<(Manifest, SourceFile, String), StorageError>,
        reply: oneshot::Sender<Result<SharedFile, NodeError>>,
    ) {
        let (manifest, source, mime) = match result {
            Ok(ok) => ok,
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        let info_hash = manifest.info_hash();
        if let Some(share) = self.shares.get_mut(&info_hash) {
            // The same content is already shared (perhaps from another path).
            if share.announced {
                let _ = reply.send(Ok(share.file.clone()));
            } else {
                share.waiting.push(reply);
            }
            return;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let name = truncate_name(&name);
        let file = SharedFile {
            info_hash,
            name,
            path: path.clone(),
            size: manifest.layout().len_bytes(),
            category: Category::from_mime(&mime),
            mime,
        };
        let (swarm_tx, swarm_rx) = mpsc::unbounded_channel();
        let spec = SwarmSpec {
            info_hash,
            events: self.events.clone(),
            internal: self.internal_tx.clone(),
            limits: self.limits.clone(),
        };
        tokio::spawn(swarm_task::run_seeding(
            spec,
            manifest,
            Arc::new(source),
            SwarmConfig::default(),
            swarm_rx,
        ));
        info!(info_hash = %info_hash.short(), path = %path.display(), "sharing");
        self.shares.insert(
            info_hash,
            Share {
                file,
                swarm: swarm_tx,
                announced: false,
                waiting: vec![reply],
            },
        );
        self.announce(vec![info_hash]);
    }

    /// Announces shares: queued, and sent in batches that fit one frame as fast as the
    /// server's rate allows ([`AnnouncePacer`]).
    fn announce(&mut self, hashes: Vec<InfoHash>) {
        self.pacer.push(hashes);
        self.send_announcements();
    }

    /// Sends the queued announcements the server's rate allows now.
    fn send_announcements(&mut self) {
        if self.node_id.is_none() {
            return; // announced on (re)connection
        }
        for change in self.pacer.ready(Instant::now()) {
            let batch = match change {
                Change::Announce(batch) => batch,
                Change::Unannounce(info_hashes) => {
                    // If the queue to the server is full the server learns when this node
                    // reconnects or leaves.
                    let _ = self
                        .to_server
                        .try_send(ClientToServer::Unannounce { info_hashes });
                    continue;
                }
            };
            let files: Vec<FileAnnouncement> =
                batch.iter().filter_map(|h| self.announcement(*h)).collect();
            if files.is_empty() {
                continue;
            }
            self.request(
                ClientToServer::Announce {
                    files,
                    request_id: None,
                },
                Pending::Announce(batch),
            );
        }
    }

    /// What announces `info_hash`: a share as a complete holder, else a download that knows
    /// its manifest as a partial holder; `None` when neither (any more).
    fn announcement(&self, info_hash: InfoHash) -> Option<FileAnnouncement> {
        if let Some(s) = self.shares.get(&info_hash) {
            return Some(FileAnnouncement {
                info_hash,
                name: s.file.name.clone(),
                size: s.file.size,
                mime: s.file.mime.clone(),
                category: s.file.category,
                partial: false,
            });
        }
        let d = self
            .downloads
            .values()
            .find(|d| d.info_hash == info_hash && d.holds)?;
        Some(FileAnnouncement {
            info_hash,
            name: truncate_name(&d.entry.name),
            size: d.entry.size,
            mime: d.entry.mime.clone(),
            category: d.entry.category,
            partial: true,
        })
    }

    async fn unshare(
        &mut self,
        info_hash: InfoHash,
        reason: Option<String>,
    ) -> Result<(), NodeError> {
        let Some(share) = self.shares.remove(&info_hash) else {
            return Err(NodeError::NotShared { info_hash });
        };
        let _ = share.swarm.send(SwarmCommand::Stop);
        if let Some(dir) = &self.config.hash_cache {
            HashCache::new(dir).remove(&share.file.path);
        }
        // Its media URL stops answering, unless the same content is also a finished download.
        if let Some(media) = &self.media {
            match self.completed.get(&info_hash) {
                Some(path) => {
                    media.register(info_hash, path.clone());
                }
                None => media.revoke(info_hash),
            }
        }
        for waiting in share.waiting {
            let _ = waiting.send(Err(NodeError::NotShared { info_hash }));
        }
        // Paced with the announcements; not waited on (see `request`). Offline there is
        // nothing to tell: a new connection starts with no holdings.
        if self.node_id.is_some() {
            self.pacer.unannounce(info_hash);
            self.send_announcements();
        }
        if let Some(reason) = reason {
            self.emit(NodeEvent::ShareStopped { info_hash, reason })
                .await;
        }
        Ok(())
    }

    // ----- signaling -----

    async fn on_signaling(&mut self, event: SignalingEvent) {
        match event {
            SignalingEvent::Connected {
                node_id,
                ice_servers,
            } => {
                self.node_id = Some(node_id);
                self.server_ice = ice_servers;
                self.emit(NodeEvent::Connection(ConnectionState::Connected {
                    url: self.config.server_url.clone(),
                    node_id,
                }))
                .await;
                let mut all: Vec<InfoHash> = self.shares.keys().copied().collect();
                all.extend(
                    self.downloads
                        .values()
                        .filter(|d| d.holds && !self.shares.contains_key(&d.info_hash))
                        .map(|d| d.info_hash),
                );
                self.pacer.reset(Instant::now());
                self.announce(all);
                // A new connection is a new node id in no room: join ours again.
                self.rejoin_later.clear();
                let codes: Vec<String> = self.rooms.keys().cloned().collect();
                for code in codes {
                    self.rejoin(code);
                }
            }
            SignalingEvent::Disconnected => {
                self.node_id = None;
                let pending: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
                let url = self.config.server_url.clone();
                for p in pending {
                    self.fail_pending(p, || NodeError::NotConnected { url: url.clone() });
                }
                for share in self.shares.values_mut() {
                    share.announced = false;
                }
                self.pacer.reset(Instant::now());
            }
            SignalingEvent::Message(message) => self.on_server_message(*message).await,
        }
    }

    async fn on_server_message(&mut self, message: ServerToClient) {
        if let Some(pending) = message.request_id().and_then(|id| self.pending.remove(&id)) {
            return self.on_answer(pending, message).await;
        }
        match message {
            ServerToClient::IndexChanged { .. } => self.emit(NodeEvent::IndexChanged).await,
            ServerToClient::Signal {
                from,
                connection_id,
                signal,
            } => self.on_signal(from, connection_id, signal),
            ServerToClient::RoomMembers {
                room,
                host,
                members,
            } => {
                self.room_members
                    .insert(room.clone(), (host, members.clone()));
                let _ = self.live_to_members();
                self.emit(NodeEvent::Room(RoomEvent::Members {
                    room,
                    host,
                    members,
                }))
                .await;
            }
            ServerToClient::RoomMessage { room, from, body } => {
                // A clock ping to this node: answered at once, on the node's clock, so the
                // answer's times do not include an application's reaction time.
                if let shoal_protocol::RoomBody::ClockPing { id, t0 } = body {
                    let now = crate::clock_ms(self.epoch);
                    let pong = ClientToServer::RoomSend {
                        room,
                        to: Some(from),
                        body: shoal_protocol::RoomBody::ClockPong {
                            id,
                            t0,
                            t1: now,
                            t2: now,
                        },
                    };
                    let _ = self.to_server.try_send(pong);
                    return;
                }
                self.emit(NodeEvent::Room(RoomEvent::Message { room, from, body }))
                    .await;
            }
            ServerToClient::RoomClosed { room, reason } => {
                self.rooms.remove(&room);
                self.forget_room_live(&room);
                self.emit(NodeEvent::Room(RoomEvent::Closed { room, reason }))
                    .await;
            }
            ServerToClient::Error { code, reason, .. } => {
                debug!(?code, %reason, "server error");
                let room_refusal = matches!(code, ErrorCode::NotHost | ErrorCode::UnknownRoom)
                    || (code == ErrorCode::InvalidMessage && reason.starts_with("bad room_send"));
                if room_refusal {
                    self.emit(NodeEvent::Room(RoomEvent::Refused { reason }))
                        .await;
                }
            }
            other => debug!(?other, "unexpected server message"),
        }
    }

    async fn on_answer(&mut self, pending: Pending, message: ServerToClient) {
        match pending {
            Pending::Reply(reply) => {
                let joined = match &message {
                    ServerToClient::RoomJoined { room, .. } => Some((
                        room.code.clone(),
                        room.host_key.clone(),
                        room.host,
                        room.members.clone(),
                    )),
                    _ => None,
                };
                let asked = reply.send(Ok(message)).is_ok();
                match joined {
                    // Remembered only if the caller heard of it.
                    Some((code, key, host, members)) if asked => {
                        // The host's media offer may come before the member list.
                        self.room_members
                            .entry(code.clone())
                            .or_insert((host, members));
                        self.rooms.insert(code, key);
                    }
                    // The caller gave up waiting: the room it never heard of is left.
                    Some((code, ..)) => {
                        let _ = self
                            .to_server
                            .try_send(ClientToServer::LeaveRoom { room: code });
                    }
                    None => {}
                }
            }
            // Left meanwhile (the leave follows on the wire): nothing to tell.
            Pending::Rejoin(code) if !self.rooms.contains_key(&code) => {}
            Pending::Rejoin(code) => match message {
                ServerToClient::RoomJoined { room, .. } => {
                    let Some(me) = self.node_id else { return };
                    self.rooms.insert(room.code.clone(), room.host_key.clone());
                    self.room_members
                        .insert(room.code.clone(), (room.host, room.members.clone()));
                    let _ = self.live_to_members();
                    self.emit(NodeEvent::Room(RoomEvent::Rejoined { room, me }))
                        .await;
                }
                // Refused for now (too many joins at once after a server restart, a busy
                // server): tried again on the next refresh.
                ServerToClient::Error { code: error, .. }
                    if !matches!(
                        error,
                        ErrorCode::UnknownRoom | ErrorCode::NotHost | ErrorCode::LimitExceeded
                    ) =>
                {
                    self.rejoin_later.insert(code);
                }
                other => {
                    // Ended while this node was away (or the key no longer opens it).
                    self.rooms.remove(&code);
                    let reason = match other {
                        ServerToClient::Error { reason, .. } => reason,
                        other => format!("unexpected answer {other:?}"),
                    };
                    self.emit(NodeEvent::Room(RoomEvent::Closed {
                        room: code,
                        reason: format!("it could not be joined again after a reconnect: {reason}"),
                    }))
                    .await;
                }
            },
            Pending::Announce(hashes) => {
                let error = match &message {
                    ServerToClient::Error { code, reason, .. } => Some((*code, reason.clone())),
                    _ => None,
                };
                // Over the server's rate (its figures differ from ours): wait and send again.
                if let Some((ErrorCode::RateLimited, reason)) = &error {
                    debug!(%reason, files = hashes.len(), "announce refused as too fast; queued again");
                    self.pacer.refused(Instant::now(), hashes);
                    return;
                }
                // The server refuses a whole message for one bad file: announce the files of
                // a refused batch one by one, so only the refused one is dropped.
                if error.is_some() && hashes.len() > 1 {
                    for h in hashes {
                        self.announce(vec![h]);
                    }
                    return;
                }
                for h in hashes {
                    let Some(share) = self.shares.get_mut(&h) else {
                        continue;
                    };
                    match &error {
                        None => {
                            let first = !share.announced && !share.waiting.is_empty();
                            share.announced = true;
                            for waiting in share.waiting.drain(..) {
                                let _ = waiting.send(Ok(share.file.clone()));
                            }
                            if first {
                                let file = share.file.clone();
                                self.emit(NodeEvent::Shared(file)).await;
                            }
                        }
                        Some((code, reason)) => {
                            let waited = !share.waiting.is_empty();
                            for waiting in share.waiting.drain(..) {
                                let _ = waiting.send(Err(NodeError::Server {
                                    code: *code,
                                    reason: reason.clone(),
                                }));
                            }
                            if let Some(share) = self.shares.remove(&h) {
                                let _ = share.swarm.send(SwarmCommand::Stop);
                            }
                            // A share that was already up (re-announced after a reconnect)
                            // ends here: say so.
                            if !waited {
                                self.emit(NodeEvent::ShareStopped {
                                    info_hash: h,
                                    reason: format!("the signaling server refused it: {reason}"),
                                })
                                .await;
                            }
                        }
                    }
                }
            }
            Pending::DownloadLookup {
                info_hash,
                out_dir,
                reply,
            } => {
                self.looking_up.remove(&info_hash);
                let result = match message {
                    ServerToClient::LookupResult { file, .. } => {
                        self.start_download(info_hash, file, out_dir).await
                    }
                    other => Err(NodeError::unexpected(&other)),
                };
                let _ = reply.send(result);
            }
            Pending::Refresh(transfer) => {
                if let ServerToClient::LookupResult { file, .. } = message {
                    self.on_refresh(transfer, file).await;
                }
            }
        }
    }

    fn on_signal(&mut self, from: NodeId, connection_id: ConnectionId, signal: Signal) {
        if let Some(tx) = self.live_routes.get(&connection_id) {
            if tx.try_send(signal).is_err() {
                debug!(connection = %connection_id.short(), "live signal queue full; dropped");
            }
            return;
        }
        if let Some(tx) = self.connecting.get(&connection_id) {
            if tx.try_send(signal).is_err() {
                debug!(connection = %connection_id.short(), "signal queue full; dropped");
            }
            return;
        }
        // Anything but an offer is a late candidate or bye for a connection set up or gone.
        if let Signal::Offer { sdp } = signal {
            if crate::live::is_media_offer(&sdp) {
                self.accept_live(from, connection_id, sdp);
            } else {
                self.accept(from, connection_id, sdp);
            }
        }
    }

    // ----- live mode (issue 12) -----

    /// Starts streaming `path` to the members of `room`, which this node hosts.
    async fn go_live(
        &mut self,
        room: String,
        path: PathBuf,
        looping: bool,
    ) -> Result<crate::LiveInfo, NodeError> {
        if !matches!(self.rooms.get(&room), Some(Some(_))) {
            return Err(NodeError::Live(format!(
                "this node does not host room {room}"
            )));
        }
        let source = tokio::task::spawn_blocking(move || crate::live::open(&path))
            .await
            .map_err(|e| NodeError::Live(e.to_string()))??;
        let info = crate::LiveInfo {
            codecs: source.codecs.clone(),
            skipped: source.skipped.clone(),
        };
        let frames = crate::live::broadcast();
        let codecs = source.codecs.clone();
        info!(%room, codecs = ?codecs, "live");
        // A stream already live ends first (its viewers get a bye).
        self.live = None;
        let over = tokio::sync::watch::Sender::new(false);
        self.live = Some(LiveHost {
            room,
            codecs,
            frames: frames.clone(),
            over: over.clone(),
            pacer: tokio::spawn(async {}),
            viewers: HashMap::new(),
        });
        // The stream starts once the members present are connected.
        let ready = self.live_to_members();
        let pacer = tokio::spawn(crate::live::pace(source, looping, frames, ready, over));
        if let Some(live) = &mut self.live {
            live.pacer = pacer;
        }
        Ok(info)
    }

    /// Opens a media link to each member of the live room that has none, and ends the links
    /// of members who left. Answers when each new link is connected.
    fn live_to_members(&mut self) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        let me = self.node_id;
        let mut ready = Vec::new();
        let Some(live) = &self.live else {
            return ready;
        };
        if *live.over.borrow() {
            return ready;
        }
        let members: Vec<NodeId> = self
            .room_members
            .get(&live.room)
            .map(|(_, members)| members.iter().copied().filter(|m| Some(*m) != me).collect())
            .unwrap_or_default();
        let gone: Vec<NodeId> = live
            .viewers
            .keys()
            .copied()
            .filter(|v| !members.contains(v))
            .collect();
        let new: Vec<NodeId> = members
            .into_iter()
            .filter(|m| !live.viewers.contains_key(m))
            .collect();
        for peer in gone {
            if let Some(live) = &mut self.live
                && let Some((connection_id, task)) = live.viewers.remove(&peer)
            {
                task.abort();
                self.live_routes.remove(&connection_id);
            }
        }
        for peer in new {
            let connection_id = ConnectionId::random();
            let (remote_tx, remote_rx) = mpsc::channel(64);
            self.live_routes.insert(connection_id, remote_tx);
            let signals = self.signal_forwarder(peer, connection_id);
            let rtc = self.rtc_config();
            let timeout = self.config.connect_timeout;
            let internal = self.internal_tx.clone();
            let Some(live) = &mut self.live else {
                return ready;
            };
            let codecs = live.codecs.clone();
            let frames = live.frames.subscribe();
            let over = live.over.subscribe();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            ready.push(ready_rx);
            let task = tokio::spawn(async move {
                let setup = crate::live::LinkSetup {
                    rtc,
                    signals,
                    remote: remote_rx,
                    timeout,
                };
                match crate::live::serve_viewer(setup, codecs, frames, over, ready_tx).await {
                    Ok(sent) => info!(peer = %peer.short(), sent, "live viewer done"),
                    Err(reason) => warn!(peer = %peer.short(), %reason, "live viewer lost"),
                }
                let _ = internal.send(Internal::LiveViewerEnded {
                    peer,
                    connection_id,
                });
            });
            live.viewers.insert(peer, (connection_id, task));
        }
        ready
    }

    /// A media offer: a live stream, accepted from the host of a room this node is in.
    fn accept_live(&mut self, from: NodeId, connection_id: ConnectionId, sdp: String) {
        let from_a_host = self
            .room_members
            .iter()
            .any(|(room, (host, _))| *host == Some(from) && self.rooms.contains_key(room));
        if !from_a_host {
            debug!(peer = %from.short(), "media offer from a node that hosts none of our rooms; ignored");
            return;
        }
        // One stream per host: a new offer (the host went live again) replaces the old link.
        if let Some((old, task)) = self.live_watches.remove(&from) {
            task.abort();
            self.live_routes.remove(&old);
        }
        if self.live_watches.len() >= MAX_LIVE_WATCHES {
            debug!(peer = %from.short(), "watching too many live streams; offer ignored");
            return;
        }
        let (remote_tx, remote_rx) = mpsc::channel(64);
        self.live_routes.insert(connection_id, remote_tx);
        let signals = self.signal_forwarder(from, connection_id);
        let rtc = self.rtc_config();
        let timeout = self.config.connect_timeout;
        let internal = self.internal_tx.clone();
        let out = self.live_out.clone();
        let task = tokio::spawn(async move {
            crate::live::watch_host(rtc, from, sdp, signals, remote_rx, out, timeout).await;
            let _ = internal.send(Internal::LiveWatchEnded { connection_id });
        });
        self.live_watches.insert(from, (connection_id, task));
    }

    /// A room this node left or that closed: its stream stops if this node hosts it, and the
    /// streams of its host are no longer watched.
    fn forget_room_live(&mut self, room: &str) {
        let host = self.room_members.remove(room).and_then(|(host, _)| host);
        if self.live.as_ref().is_some_and(|l| l.room == room) {
            self.live = None;
        }
        if let Some(host) = host
            && let Some((connection_id, task)) = self.live_watches.remove(&host)
        {
            task.abort();
            self.live_routes.remove(&connection_id);
        }
    }

    // ----- peer connections -----

    fn signal_forwarder(
        &self,
        to: NodeId,
        connection_id: ConnectionId,
    ) -> mpsc::Sender<OutgoingSignal> {
        let (tx, mut rx) = mpsc::channel::<OutgoingSignal>(64);
        let to_server = self.to_server.clone();
        tokio::spawn(async move {
            while let Some(signal) = rx.recv().await {
                let message = ClientToServer::Signal {
                    to,
                    connection_id,
                    signal: signal.into(),
                };
                if to_server.send(message).await.is_err() {
                    break;
                }
            }
        });
        tx
    }

    /// Opens a peer connection to `peer` for a download.
    fn connect(&mut self, transfer: TransferId, info_hash: InfoHash, peer: NodeId) {
        let connection_id = ConnectionId::random();
        debug!(peer = %peer.short(), connection = %connection_id.short(), "connecting");
        self.set_up_link(peer, connection_id, Some(transfer), Setup::Offer(info_hash));
    }

    /// Answers an offer from `peer` (it wants something we hold).
    fn accept(&mut self, peer: NodeId, connection_id: ConnectionId, sdp: String) {
        let total: usize = self.inbound_setups.values().sum();
        let from_peer = self.inbound_setups.get(&peer).copied().unwrap_or(0);
        if total >= MAX_INBOUND_SETUPS || from_peer >= MAX_INBOUND_SETUPS_PER_PEER {
            debug!(peer = %peer.short(), "too many connections being set up; offer ignored");
            return;
        }
        *self.inbound_setups.entry(peer).or_default() += 1;
        debug!(peer = %peer.short(), connection = %connection_id.short(), "accepting");
        self.set_up_link(peer, connection_id, None, Setup::Answer(sdp));
    }

    /// Runs the offer/answer exchange and ICE in a task until the data channel opens, then
    /// reports `LinkReady` (the channel's label names the content) or `LinkFailed`.
    fn set_up_link(
        &mut self,
        peer: NodeId,
        connection_id: ConnectionId,
        transfer: Option<TransferId>,
        setup: Setup,
    ) {
        let (remote_tx, remote_rx) = mpsc::channel(64);
        self.connecting.insert(connection_id, remote_tx);
        let signals = self.signal_forwarder(peer, connection_id);
        let rtc = self.rtc_config();
        let internal = self.internal_tx.clone();
        let timeout = self.config.connect_timeout;
        tokio::spawn(async move {
            let result = async {
                let link = match &setup {
                    Setup::Offer(info_hash) => {
                        PeerLink::offer(&rtc, &info_hash.to_string(), signals).await
                    }
                    Setup::Answer(sdp) => PeerLink::answer(&rtc, sdp, signals).await,
                }
                .map_err(|e| e.to_string())?;
                let opened = open_channel(&link, remote_rx, timeout)
                    .await
                    .and_then(|data| match data.label().parse::<InfoHash>() {
                        Ok(info_hash) => Ok((data, info_hash)),
                        Err(_) => Err(format!(
                            "data channel label {:?} is not an info hash",
                            data.label()
                        )),
                    });
                match opened {
                    Ok((data, info_hash)) => Ok((link, data, info_hash)),
                    Err(e) => {
                        link.close().await;
                        Err(e)
                    }
                }
            }
            .await;
            let message = match result {
                Ok((link, data, info_hash)) => Internal::LinkReady {
                    connection_id,
                    peer,
                    info_hash,
                    transfer,
                    link,
                    data,
                },
                Err(reason) => Internal::LinkFailed {
                    connection_id,
                    peer,
                    transfer,
                    reason,
                },
            };
            let _ = internal.send(message);
        });
    }

    /// An answer set-up ended (ready or failed).
    fn inbound_done(&mut self, peer: NodeId) {
        if let Some(n) = self.inbound_setups.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.inbound_setups.remove(&peer);
            }
        }
    }

    async fn on_internal(&mut self, message: Internal) {
        match message {
            Internal::Hashed {
                path,
                result,
                reply,
            } => self.on_hashed(path, result, reply).await,
            Internal::LinkReady {
                connection_id,
                peer,
                info_hash,
                transfer,
                link,
                data,
            } => {
                self.connecting.remove(&connection_id);
                if let Some(t) = transfer
                    && let Some(d) = self.downloads.get_mut(&t)
                {
                    d.policy.link_ready(peer);
                }
                if transfer.is_none() {
                    self.inbound_done(peer);
                }
                // Our own download's link goes to that download; a peer's link to a download
                // of that content (it serves what it has), else to the share.
                let swarm = match transfer {
                    Some(t) => self.downloads.get(&t).map(|d| d.swarm.clone()),
                    None => self
                        .downloads
                        .values()
                        .find(|d| d.info_hash == info_hash)
                        .map(|d| d.swarm.clone())
                        .or_else(|| self.shares.get(&info_hash).map(|s| s.swarm.clone())),
                };
                match swarm {
                    Some(swarm) => {
                        let add = SwarmCommand::AddLink { peer, link, data };
                        if let Err(mpsc::error::SendError(SwarmCommand::AddLink { link, .. })) =
                            swarm.send(add)
                        {
                            tokio::spawn(async move { link.close().await });
                        }
                    }
                    None => {
                        debug!(info_hash = %info_hash.short(), "peer asked for content we do not have");
                        tokio::spawn(async move { link.close().await });
                    }
                }
            }
            Internal::LinkFailed {
                connection_id,
                peer,
                transfer,
                reason,
            } => {
                self.connecting.remove(&connection_id);
                if transfer.is_none() {
                    self.inbound_done(peer);
                }
                debug!(peer = %peer.short(), %reason, "peer connection failed");
                if let Some(t) = transfer
                    && let Some(d) = self.downloads.get_mut(&t)
                {
                    d.policy.connect_failed(peer, &reason, Instant::now());
                }
            }
            Internal::LinkClosed {
                transfer,
                peer,
                failure,
            } => {
                if let Some(d) = self.downloads.get_mut(&transfer) {
                    d.policy.link_closed(peer, failure, Instant::now());
                }
            }
            Internal::PeerBanned {
                transfer,
                peer,
                reason,
            } => {
                if let Some(d) = self.downloads.get_mut(&transfer) {
                    d.policy.banned(peer, reason);
                }
            }
            Internal::SwarmEnded(ended) => self.on_swarm_ended(ended).await,
            Internal::ManifestKnown { transfer } => {
                if let Some(d) = self.downloads.get_mut(&transfer)
                    && !d.holds
                {
                    d.holds = true;
                    let info_hash = d.info_hash;
                    if self.node_id.is_some() && !self.shares.contains_key(&info_hash) {
                        self.announce(vec![info_hash]);
                    }
                }
            }
            Internal::Finished { info_hash, path } => {
                self.completed.insert(info_hash, path);
            }
            Internal::LiveViewerEnded {
                peer,
                connection_id,
            } => {
                self.live_routes.remove(&connection_id);
                if let Some(live) = &mut self.live
                    && live
                        .viewers
                        .get(&peer)
                        .is_some_and(|(c, _)| *c == connection_id)
                {
                    live.viewers.remove(&peer);
                }
            }
            Internal::LiveWatchEnded { connection_id } => {
                self.live_routes.remove(&connection_id);
                self.live_watches.retain(|_, (c, _)| *c != connection_id);
            }
            Internal::Seeding {
                transfer,
                info_hash,
                path,
                mime,
                len_bytes,
            } => {
                self.on_seeding(transfer, info_hash, path, mime, len_bytes)
                    .await
            }
        }
    }

    // ----- downloads -----

    async fn start_download(
        &mut self,
        info_hash: InfoHash,
        file: Option<IndexedFile>,
        out_dir: PathBuf,
    ) -> Result<TransferStatus, NodeError> {
        let Some(file) = file else {
            return Err(NodeError::UnknownInfoHash { info_hash });
        };
        let me = self.node_id;
        let holders: Vec<NodeId> = file.all_holders().filter(|h| Some(*h) != me).collect();
        if holders.is_empty() {
            return Err(NodeError::NoHolders { info_hash });
        }
        let transfer = TransferId(self.next_transfer);
        self.next_transfer += 1;
        let (swarm_tx, swarm_rx) = mpsc::unbounded_channel();
        let spec = SwarmSpec {
            info_hash,
            events: self.events.clone(),
            internal: self.internal_tx.clone(),
            limits: self.limits.clone(),
        };
        let name = safe_file_name(&file.name);
        let status = self.book.insert(TransferStatus::new(
            DownloadProgress {
                transfer,
                info_hash,
                name: name.clone(),
                bytes_done: 0,
                len_bytes: file.size,
                rate_bytes_per_sec: 0.0,
                peers: 0,
                sent_bytes: 0,
                upload_rate_bytes_per_sec: 0.0,
                peers_served: 0,
            },
            out_dir.clone(),
        ));
        let answer = status.borrow().clone();
        let mime = match mime_guess::from_path(&name).first() {
            Some(guess) => guess.essence_str().to_owned(),
            None => file.mime.clone(),
        };
        let (stream, stream_feed) = crate::stream::stream(mime);
        let what = swarm_task::DownloadSpec {
            transfer,
            status: status.clone(),
            name: name.clone(),
            len_bytes: file.size,
            dir: out_dir,
            share_after: self.config.share_completed,
            hash_cache: self.config.hash_cache.clone(),
            stream: stream_feed,
        };
        tokio::spawn(swarm_task::run_download(
            spec,
            what,
            SwarmConfig {
                picker_seed: rand::random_range(1..u32::MAX),
                ..SwarmConfig::default()
            },
            swarm_rx,
        ));
        info!(%transfer, info_hash = %info_hash.short(), holders = holders.len(), "download started");
        self.downloads.insert(
            transfer,
            Download {
                info_hash,
                swarm: swarm_tx,
                policy: HolderPolicy::new(
                    self.config.connections_per_peer,
                    self.config.max_peers_per_download,
                ),
                status,
                entry: file,
                holds: false,
                stream,
                name,
            },
        );
        self.connect_holders(transfer, &holders);
        Ok(answer)
    }

    /// Opens connections to holders the download is not yet connected to.
    fn connect_holders(&mut self, transfer: TransferId, holders: &[NodeId]) {
        let me = self.node_id;
        let holders: Vec<NodeId> = holders.iter().copied().filter(|h| Some(*h) != me).collect();
        let Some(d) = self.downloads.get_mut(&transfer) else {
            return;
        };
        let info_hash = d.info_hash;
        for peer in d.policy.holders_found(&holders, Instant::now()) {
            self.connect(transfer, info_hash, peer);
        }
    }

    /// Sends `join_room` again for a room this node is in (with its host key for one it
    /// hosts).
    fn rejoin(&mut self, code: String) {
        let Some(host_key) = self.rooms.get(&code).cloned() else {
            return;
        };
        let join = ClientToServer::JoinRoom {
            room: code.clone(),
            host_key,
            request_id: None,
        };
        self.request(join, Pending::Rejoin(code));
    }

    /// Tries again the rejoins refused for now, while connected.
    fn rejoin_rooms_later(&mut self) {
        if self.node_id.is_none() {
            return;
        }
        for code in std::mem::take(&mut self.rejoin_later) {
            self.rejoin(code);
        }
    }

    fn refresh_downloads(&mut self) {
        let transfers: Vec<(TransferId, InfoHash)> = self
            .downloads
            .iter()
            .map(|(t, d)| (*t, d.info_hash))
            .collect();
        for (transfer, info_hash) in transfers {
            self.request(
                ClientToServer::Lookup {
                    info_hash,
                    request_id: None,
                },
                Pending::Refresh(transfer),
            );
        }
    }

    async fn on_refresh(&mut self, transfer: TransferId, file: Option<IndexedFile>) {
        let me = self.node_id;
        let holders: Vec<NodeId> = file
            .iter()
            .flat_map(IndexedFile::all_holders)
            .filter(|h| Some(*h) != me)
            .collect();
        let Some(d) = self.downloads.get_mut(&transfer) else {
            return;
        };
        let info_hash = d.info_hash;
        match d.policy.refreshed(&holders, Instant::now()) {
            Ok(open) => {
                for peer in open {
                    self.connect(transfer, info_hash, peer);
                }
            }
            Err(give_up) => {
                let (cause, reason) = match give_up {
                    GiveUp::SourcesFailed { peers } => {
                        let last_reason = peers
                            .last()
                            .map(|(peer, fault)| format!("peer {} {fault}", peer.short()))
                            .unwrap_or_default();
                        (
                            FailureCause::SourcesFailed { peers },
                            NodeError::SourcesFailed {
                                info_hash,
                                last_reason,
                            },
                        )
                    }
                    GiveUp::NoHolders => {
                        (FailureCause::NoHolders, NodeError::NoHolders { info_hash })
                    }
                };
                let _ = d.swarm.send(SwarmCommand::Fail(cause, reason.to_string()));
            }
        }
    }

    /// A download's stream URL gives way to its finished file, or stops answering when the
    /// download ended without one (unless the content is shared or finished otherwise).
    fn stream_done(&mut self, info_hash: InfoHash, path: Option<&std::path::Path>) {
        let Some(media) = &self.media else {
            return;
        };
        if !media.is_stream(info_hash) {
            return;
        }
        let other = self
            .shares
            .get(&info_hash)
            .map(|s| s.file.path.clone())
            .or_else(|| self.completed.get(&info_hash).cloned());
        match path.map(std::path::Path::to_path_buf).or(other) {
            Some(path) => {
                media.register(info_hash, path);
            }
            None => media.revoke(info_hash),
        }
    }

    /// The media server, started on first use.
    async fn media_server(&mut self) -> Result<&MediaServer, NodeError> {
        if self.media.is_none() {
            self.media = Some(
                MediaServer::start(self.live_out.clone())
                    .await
                    .map_err(NodeError::MediaServer)?,
            );
        }
        self.media.as_ref().ok_or(NodeError::Stopped)
    }

    /// A URL that plays a download while it runs ([`crate::NodeHandle::stream_url`]).
    async fn stream_url(&mut self, transfer: TransferId) -> Result<String, NodeError> {
        let Some(d) = self.downloads.get(&transfer) else {
            return Err(NodeError::UnknownTransfer(transfer.0));
        };
        let (info_hash, name, stream) = (d.info_hash, d.name.clone(), d.stream.clone());
        let media = self.media_server().await?;
        Ok(media.register_stream(info_hash, &name, stream))
    }

    async fn media_url(&mut self, path: PathBuf) -> Result<String, NodeError> {
        let info_hash = self
            .shares
            .values()
            .find(|s| s.file.path == path)
            .map(|s| s.file.info_hash)
            .or_else(|| {
                self.completed
                    .iter()
                    .find(|(_, p)| **p == path)
                    .map(|(h, _)| *h)
            })
            .ok_or_else(|| NodeError::NotPlayable { path: path.clone() })?;
        let media = self.media_server().await?;
        Ok(media.register(info_hash, path))
    }

    /// A finished download goes on as a share of its file, in the same swarm task: it
    /// leaves the downloads, joins the shares, and is announced again as a complete holder.
    async fn on_seeding(
        &mut self,
        transfer: TransferId,
        info_hash: InfoHash,
        path: PathBuf,
        mime: String,
        len_bytes: u64,
    ) {
        let Some(download) = self.downloads.remove(&transfer) else {
            return;
        };
        self.completed.insert(info_hash, path.clone());
        self.stream_done(info_hash, Some(&path));
        if self.shares.contains_key(&info_hash) {
            // The user shares the same content from another file already.
            let _ = download.swarm.send(SwarmCommand::Stop);
            return;
        }
        let name = path
            .file_name()
            .map(|n| truncate_name(&n.to_string_lossy()))
            .unwrap_or_else(|| truncate_name(&download.entry.name));
        let file = SharedFile {
            info_hash,
            name,
            path,
            size: len_bytes,
            category: Category::from_mime(&mime),
            mime,
        };
        info!(info_hash = %info_hash.short(), path = %file.path.display(), "sharing the finished download");
        self.shares.insert(
            info_hash,
            Share {
                file: file.clone(),
                swarm: download.swarm,
                announced: false,
                waiting: Vec::new(),
            },
        );
        if self.node_id.is_some() {
            self.announce(vec![info_hash]);
        }
        self.emit(NodeEvent::Shared(file)).await;
    }

    async fn on_swarm_ended(&mut self, ended: SwarmEnded) {
        match ended {
            SwarmEnded::Download {
                info_hash,
                transfer,
                path,
            } => {
                let held = self.downloads.remove(&transfer).is_some_and(|d| d.holds);
                self.stream_done(info_hash, path.as_deref());
                if let Some(path) = path {
                    self.completed.insert(info_hash, path);
                }
                // No longer a partial holder, unless it is shared or downloading again.
                let still = self.shares.contains_key(&info_hash)
                    || self
                        .downloads
                        .values()
                        .any(|d| d.info_hash == info_hash && d.holds);
                if held && !still && self.node_id.is_some() {
                    self.pacer.unannounce(info_hash);
                    self.send_announcements();
                }
            }
            SwarmEnded::Share { info_hash, error } => {
                if let Some(reason) = error
                    && self.shares.contains_key(&info_hash)
                {
                    warn!(info_hash = %info_hash.short(), %reason, "share stopped");
                    let _ = self.unshare(info_hash, Some(reason)).await;
                }
            }
        }
    }

    async fn shutdown(&mut self) {
        self.live = None;
        for (_, (_, task)) in self.live_watches.drain() {
            task.abort();
        }
        self.live_routes.clear();
        for d in self.downloads.values() {
            let _ = d.swarm.send(SwarmCommand::Stop);
        }
        for s in self.shares.values() {
            let _ = s.swarm.send(SwarmCommand::Stop);
        }
        // Wait for swarm tasks to save their state and close their links.
        for d in self.downloads.values() {
            d.swarm.closed().await;
        }
        for s in self.shares.values() {
            s.swarm.closed().await;
        }
    }
}

/// Applies remote signals until the data channel opens.
async fn open_channel(
    link: &PeerLink,
    mut remote: mpsc::Receiver<Signal>,
    timeout: Duration,
) -> Result<DataLink, String> {
    let open = link.channel(timeout);
    tokio::pin!(open);
    loop {
        tokio::select! {
            result = &mut open => return result.map_err(|e| e.to_string()),
            signal = remote.recv() => match signal {
                Some(Signal::Bye) => return Err("the peer hung up".into()),
                Some(signal) => {
                    if let Err(e) = link.apply_remote(signal).await {
                        debug!(error = %e, "remote signal rejected");
                    }
                }
                None => return Err("signaling ended".into()),
            },
        }
    }
}

/// Keeps a display name within the protocol's 255-byte limit, on a character boundary.
fn truncate_name(name: &str) -> String {
    let mut end = name.len().min(shoal_protocol::MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}
