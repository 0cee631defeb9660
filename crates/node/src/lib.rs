//! The API every Shoal front end uses: `Node::spawn(config) -> (NodeHandle, events)`.
//!
//! A node connects to a signaling server (`docs/protocol.md`), shares files (hashing them into
//! manifests, `docs/wire.md` §2), and downloads files from every peer that holds them over
//! WebRTC data channels (`shoal-rtc`), driving one sans-IO [`shoal_transfer::Swarm`] per
//! content. The `shoal` CLI and the desktop app use only [`NodeHandle`] and [`NodeEvent`].
//!
//! Tasks: one *actor* owns the node's state (shares, downloads, pending requests, peer
//! connections being set up) and talks to one *signaling* task (the WebSocket, reconnecting
//! with backoff); each shared or downloading content has one *swarm* task that owns its
//! `Swarm`, its file and its links; each link has a reader and a writer task.

#![deny(missing_docs)]

mod actor;
mod announce;
mod book;
mod error;
mod events;
mod limit;
mod live;
mod media;
mod media_duration;
mod media_type;
mod policy;
pub mod room;
mod signaling;
mod stream;
mod swarm_task;

use std::path::PathBuf;
use std::time::Duration;

pub use error::NodeError;
pub use events::{
    ConnectionState, DownloadProgress, FailureCause, LinkedPeer, NodeEvent, PeerFault, PieceMap,
    RoomEvent, SharedFile, TransferId, TransferPhase, TransferStatus, TransferSummary,
    UploadProgress,
};
pub use live::{LiveEvent, LiveMp4};
pub use shoal_protocol::{
    Category, IceServer, IndexedFile, InfoHash, MAX_MEMBER_NAME_BYTES, MemberPlayback, NodeId,
    RoomBody, RoomInfo, text,
};
pub use shoal_rtc::MediaCodec;
pub use shoal_rtc::log::init_stderr as init_logging;

/// The playing time of the media file at `path` in seconds, from its container (MP4 `mvhd`,
/// Matroska/WebM `Info`); `None` when the file cannot be read, is not one of those, or names
/// no usable duration. Reads at most a few boxes' headers and 64 KiB.
pub fn media_duration_secs(path: &std::path::Path) -> Option<f64> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let read = |offset: u64, n: usize| {
        let end = offset.checked_add(n as u64)?.min(len);
        let mut buf = vec![0u8; end.checked_sub(offset)? as usize];
        file.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    };
    match media_duration::duration(len, &read) {
        media_duration::Duration::Secs(secs) => Some(secs),
        _ => None,
    }
}
pub use shoal_rtc::{CandidateType, RtcConfig, check_ice_server};
pub use shoal_transfer::CloseReason;
use tokio::sync::{mpsc, oneshot};

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Signaling server, `ws://host:port`. Default `ws://127.0.0.1:7878`.
    pub server_url: String,
    /// WebRTC settings; its `ice_servers` are used in addition to those the server sends in
    /// `welcome`.
    pub rtc: RtcConfig,
    /// Where downloads go unless a download names another folder.
    pub download_dir: PathBuf,
    /// Peer connections opened to each holder of a download. One connection's SCTP driver is
    /// a single task; two reach about twice the rate on a fast path
    /// (docs/ARCHITECTURE.md "Measured facts").
    /// Default 2.
    pub connections_per_peer: usize,
    /// Most holders a download connects to at once. Default 8.
    pub max_peers_per_download: usize,
    /// Longest wait for a peer connection's data channel to open. Default 20 s.
    pub connect_timeout: Duration,
    /// Longest wait for an answer from the signaling server. Default 10 s.
    pub request_timeout: Duration,
    /// Free text sent to the server in `hello` (`shoal-cli/0.1.0`).
    pub agent: String,
    /// Folder of remembered manifests ([`shoal_storage::HashCache`]): sharing a file whose
    /// size, modification time, device and inode are those it was hashed at reads nothing.
    /// `None` (the default) hashes every share.
    pub hash_cache: Option<PathBuf>,
    /// A finished download stays served: it becomes a share ([`NodeEvent::Shared`]) and is
    /// announced as a complete holder until unshared or the node stops. Default `true`.
    /// Whatever this says, a download serves the pieces it has verified and is announced as a
    /// partial holder while it runs (issue 10: viewers serve each other).
    pub share_completed: bool,
    /// Most bytes per second this node sends to peers, over all links; `None` (the
    /// default) is no cap. A token bucket with a quarter second of burst.
    pub max_upload_bytes_per_sec: Option<u64>,
    /// Most bytes per second this node takes from peers, over all links; `None` (the
    /// default) is no cap. Slows the senders through the data channels' flow control.
    pub max_download_bytes_per_sec: Option<u64>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            server_url: "ws://127.0.0.1:7878".into(),
            rtc: RtcConfig::default(),
            download_dir: PathBuf::from("."),
            connections_per_peer: 2,
            max_peers_per_download: 8,
            connect_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            agent: format!("shoal-node/{}", env!("CARGO_PKG_VERSION")),
            hash_cache: None,
            share_completed: true,
            max_upload_bytes_per_sec: None,
            max_download_bytes_per_sec: None,
        }
    }
}

/// Starts nodes.
pub struct Node;

impl Node {
    /// Starts a node on the current tokio runtime: it connects to the signaling server in the
    /// background (and keeps reconnecting) and returns at once.
    ///
    /// Events arrive on the returned receiver; read it, or progress events are dropped and the
    /// node slows down on rare events once 1,024 are queued.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(config: NodeConfig) -> (NodeHandle, mpsc::Receiver<NodeEvent>) {
        let (events_tx, events_rx) = mpsc::channel(1024);
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let request_timeout = config.request_timeout;
        let epoch = std::time::Instant::now();
        let book = book::TransferBook::default();
        let (live, _) = tokio::sync::broadcast::channel(LIVE_FRAMES);
        tokio::spawn(actor::run(
            config,
            commands_rx,
            events_tx,
            epoch,
            book.clone(),
            live.clone(),
        ));
        (
            NodeHandle {
                commands: commands_tx,
                request_timeout,
                epoch,
                book,
                live,
            },
            events_rx,
        )
    }
}

/// Milliseconds since `epoch`: a node's room clock ([`NodeHandle::clock_ms`]).
pub(crate) fn clock_ms(epoch: std::time::Instant) -> f64 {
    epoch.elapsed().as_secs_f64() * 1000.0
}

/// Commands from a [`NodeHandle`] to the actor.
pub(crate) enum Command {
    Share {
        path: PathBuf,
        reply: oneshot::Sender<Result<SharedFile, NodeError>>,
    },
    Unshare {
        info_hash: InfoHash,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Shares {
        reply: oneshot::Sender<Vec<SharedFile>>,
    },
    Request {
        message: shoal_protocol::ClientToServer,
        reply: oneshot::Sender<Result<shoal_protocol::ServerToClient, NodeError>>,
    },
    /// Sends a message that has no answer.
    Post {
        message: shoal_protocol::ClientToServer,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Download {
        info_hash: InfoHash,
        out_dir: Option<PathBuf>,
        reply: oneshot::Sender<Result<TransferStatus, NodeError>>,
    },
    Cancel {
        transfer: TransferId,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    NodeId {
        reply: oneshot::Sender<Option<NodeId>>,
    },
    MediaUrl {
        path: PathBuf,
        reply: oneshot::Sender<Result<String, NodeError>>,
    },
    StreamUrl {
        transfer: TransferId,
        reply: oneshot::Sender<Result<String, NodeError>>,
    },
    LiveUrl {
        reply: oneshot::Sender<Result<String, NodeError>>,
    },
    PieceMap {
        transfer: TransferId,
        reply: oneshot::Sender<Result<PieceMap, NodeError>>,
    },
    SetLimits {
        limits: TransferLimits,
        reply: oneshot::Sender<()>,
    },
    GoLive {
        room: String,
        path: PathBuf,
        looping: bool,
        reply: oneshot::Sender<Result<LiveInfo, NodeError>>,
    },
    StopLive {
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What a node's transfers may use, changeable while it runs ([`NodeHandle::set_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferLimits {
    /// [`NodeConfig::max_upload_bytes_per_sec`].
    pub max_upload_bytes_per_sec: Option<u64>,
    /// [`NodeConfig::max_download_bytes_per_sec`].
    pub max_download_bytes_per_sec: Option<u64>,
    /// [`NodeConfig::share_completed`]; downloads already under way keep the value they
    /// started with.
    pub share_completed: bool,
}

/// A cheap, cloneable handle on a running node. Every method is a request to the node's
/// actor; they fail with [`NodeError::Stopped`] after [`NodeHandle::shutdown`].
#[derive(Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    request_timeout: std::time::Duration,
    /// The start of [`NodeHandle::clock_ms`].
    epoch: std::time::Instant,
    /// Every download's status, written by the swarm tasks.
    book: book::TransferBook,
    /// The live streams this node watches ([`NodeHandle::live_frames`]).
    live: tokio::sync::broadcast::Sender<LiveEvent>,
}

/// Live frames a front end that reads late may fall behind by before it loses some: about
/// 10 s of 25 fps video with 50 audio packets a second.
const LIVE_FRAMES: usize = 768;

/// What a live stream sends ([`NodeHandle::go_live`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInfo {
    /// Its tracks' codecs (a video track first when there is one).
    pub codecs: Vec<MediaCodec>,
    /// The file's tracks left out, in words (an AAC track: WebRTC carries no AAC).
    pub skipped: Vec<String>,
}

impl NodeHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Hashes `path` (emitting [`NodeEvent::HashingProgress`]), then announces it. Returns once
    /// the server confirmed the announcement. With a [`NodeConfig::hash_cache`] and an
    /// unchanged file, the remembered manifest is used and only one progress event (all
    /// bytes) is emitted.
    ///
    /// # Errors
    /// The file cannot be read, hashing failed, or the server refused or is unreachable.
    pub async fn share(&self, path: PathBuf) -> Result<SharedFile, NodeError> {
        self.ask(|reply| Command::Share { path, reply }).await?
    }

    /// Stops sharing a file and removes it from the index.
    ///
    /// # Errors
    /// [`NodeError::NotShared`] when this node does not share it.
    pub async fn unshare(&self, info_hash: InfoHash) -> Result<(), NodeError> {
        self.ask(|reply| Command::Unshare { info_hash, reply })
            .await?
    }

    /// The files this node shares.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn shares(&self) -> Result<Vec<SharedFile>, NodeError> {
        self.ask(|reply| Command::Shares { reply }).await
    }

    /// This node's downloads, oldest first: every running one and the latest 256 ended
    /// ones (until [`NodeHandle::forget_transfer`]), as they stand now (figures at most 250 ms
    /// old). A front end that lost its events (a reloaded window) asks here instead of
    /// keeping its own copy. Answers from memory, also after the node stopped.
    pub fn transfers(&self) -> Vec<TransferStatus> {
        self.book.list()
    }

    /// One download as it stands now.
    ///
    /// # Errors
    /// [`NodeError::UnknownTransfer`] for an id this node never gave, or one forgotten.
    pub fn transfer(&self, transfer: TransferId) -> Result<TransferStatus, NodeError> {
        self.book
            .get(transfer)
            .ok_or(NodeError::UnknownTransfer(transfer.0))
    }

    /// Follows one download: the receiver sees its status now (`borrow`) and wakes on each
    /// change (`changed`, about four times a second while it runs); the phase says when it
    /// ended. The stream of one download, for a front end that does not want every event.
    ///
    /// # Errors
    /// [`NodeError::UnknownTransfer`] for an id this node never gave, or one forgotten.
    pub fn watch_transfer(
        &self,
        transfer: TransferId,
    ) -> Result<tokio::sync::watch::Receiver<TransferStatus>, NodeError> {
        self.book
            .watch(transfer)
            .ok_or(NodeError::UnknownTransfer(transfer.0))
    }

    /// Goes live in `room`, a room this node hosts (issue 12): streams the video file at
    /// `path` (MP4 with H.264, WebM with VP8/VP9 and Opus; passed through, not re-encoded)
    /// over WebRTC media tracks to every member, and to members who join later from the next
    /// keyframe, paced from one clock anchor; from its start again at its end (`looping`),
    /// or until its end. Replaces a stream already live.
    ///
    /// # Errors
    /// [`NodeError::Live`] when this node does not host `room` or the file cannot be sent.
    pub async fn go_live(
        &self,
        room: &str,
        path: PathBuf,
        looping: bool,
    ) -> Result<LiveInfo, NodeError> {
        self.ask(|reply| Command::GoLive {
            room: room.to_owned(),
            path,
            looping,
            reply,
        })
        .await?
    }

    /// Stops this node's live stream (its viewers' links close).
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn stop_live(&self) -> Result<(), NodeError> {
        self.ask(|reply| Command::StopLive { reply }).await
    }

    /// The live streams this node receives as a room member: each frame as it is rebuilt
    /// (about 75 a second for 25 fps video with Opus). A receiver that falls more than 768
    /// frames behind loses the oldest (`RecvError::Lagged`).
    pub fn live_frames(&self) -> tokio::sync::broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }

    /// Forgets an ended download (a front end cleared it from its list); a running one
    /// stays. True when it was forgotten.
    pub fn forget_transfer(&self, transfer: TransferId) -> bool {
        self.book.forget(transfer)
    }

    async fn request(
        &self,
        message: shoal_protocol::ClientToServer,
    ) -> Result<shoal_protocol::ServerToClient, NodeError> {
        let timeout = self.request_timeout;
        tokio::time::timeout(
            timeout,
            self.ask(|reply| Command::Request { message, reply }),
        )
        .await
        .map_err(|_| NodeError::Timeout {
            seconds: timeout.as_secs(),
        })??
    }

    /// The network's files, optionally one category (at most 1,000, sorted by name).
    ///
    /// # Errors
    /// Not connected, or the server did not answer in time.
    pub async fn list(&self, category: Option<Category>) -> Result<Vec<IndexedFile>, NodeError> {
        match self
            .request(shoal_protocol::ClientToServer::List {
                category,
                request_id: None,
            })
            .await?
        {
            shoal_protocol::ServerToClient::ListResult { files, .. } => Ok(files),
            other => Err(NodeError::unexpected(&other)),
        }
    }

    /// Files whose names contain every word of `query` (at most 100).
    ///
    /// # Errors
    /// Not connected, or the server did not answer in time.
    pub async fn search(
        &self,
        query: &str,
        category: Option<Category>,
    ) -> Result<Vec<IndexedFile>, NodeError> {
        match self
            .request(shoal_protocol::ClientToServer::Search {
                query: query.to_owned(),
                category,
                request_id: None,
            })
            .await?
        {
            shoal_protocol::ServerToClient::SearchResult { files, .. } => Ok(files),
            other => Err(NodeError::unexpected(&other)),
        }
    }

    /// One index entry, or `None` when no connected node holds it.
    ///
    /// # Errors
    /// Not connected, or the server did not answer in time.
    pub async fn lookup(&self, info_hash: InfoHash) -> Result<Option<IndexedFile>, NodeError> {
        match self
            .request(shoal_protocol::ClientToServer::Lookup {
                info_hash,
                request_id: None,
            })
            .await?
        {
            shoal_protocol::ServerToClient::LookupResult { file, .. } => Ok(file),
            other => Err(NodeError::unexpected(&other)),
        }
    }

    /// Starts downloading `info_hash` into `out_dir` (default: the configured download
    /// folder) from every holder, and answers its status at once (its id, name, length from
    /// the index, phase running). Progress, completion and failure arrive as events with its
    /// id, and in [`NodeHandle::transfer`]. Resumes a `.part` file of the same content in
    /// that folder.
    ///
    /// # Errors
    /// [`NodeError::UnknownInfoHash`], [`NodeError::NoHolders`], not connected, or the folder
    /// cannot be used.
    pub async fn download(
        &self,
        info_hash: InfoHash,
        out_dir: Option<PathBuf>,
    ) -> Result<TransferStatus, NodeError> {
        self.ask(|reply| Command::Download {
            info_hash,
            out_dir,
            reply,
        })
        .await?
    }

    /// Cancels a download; its `.part` file and resume state stay for a later resume.
    ///
    /// # Errors
    /// [`NodeError::UnknownTransfer`].
    pub async fn cancel(&self, transfer: TransferId) -> Result<(), NodeError> {
        self.ask(|reply| Command::Cancel { transfer, reply })
            .await?
    }

    /// This node's id on the signaling server, while connected.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn node_id(&self) -> Result<Option<NodeId>, NodeError> {
        self.ask(|reply| Command::NodeId { reply }).await
    }

    /// A loopback URL that serves `path` with HTTP Range support for the app's player:
    /// `http://127.0.0.1:<port>/<random token>/<info hash>/<name>`. Only this node's shares
    /// and finished downloads can be served.
    ///
    /// # Errors
    /// [`NodeError::NotPlayable`] for any other path; an I/O error if the server cannot start.
    pub async fn media_url(&self, path: PathBuf) -> Result<String, NodeError> {
        self.ask(|reply| Command::MediaUrl { path, reply }).await?
    }

    /// A loopback URL that plays a download while it runs (issue 10):
    /// `http://127.0.0.1:<port>/<random token>/<info hash>/<name>`, answering HTTP Range
    /// requests (RFC 9110 §14) with verified bytes only. A request for bytes not yet here
    /// makes their pieces the download's most urgent and waits for them; when no piece at all
    /// arrives for 30 s it fails (504 before the response starts, a cut body after). Bytes
    /// past the end get 416. When the download completes the same URL serves the finished
    /// file; when it fails or is cancelled the URL stops answering.
    ///
    /// # Errors
    /// [`NodeError::UnknownTransfer`] when no such download runs; an I/O error if the server
    /// cannot start.
    pub async fn stream_url(&self, transfer: TransferId) -> Result<String, NodeError> {
        self.ask(|reply| Command::StreamUrl { transfer, reply })
            .await?
    }

    /// A loopback URL that plays the live stream this node receives as a room member
    /// (issue 12): `http://127.0.0.1:<port>/<random token>/live`. A `GET` answers, from the
    /// stream's next keyframe on, fragmented MP4 for Media Source Extensions
    /// ([`LiveMp4`]), with the MIME type and codecs (RFC 6381) as `Content-Type`; it waits
    /// up to 30 s for a stream (then 504) and ends with the stream. A reader that falls
    /// behind skips to the next keyframe.
    ///
    /// # Errors
    /// An I/O error if the server cannot start.
    pub async fn live_url(&self) -> Result<String, NodeError> {
        self.ask(|reply| Command::LiveUrl { reply }).await?
    }

    /// Which bytes of a running download are here, on their way or missing, for a player's
    /// piece map (issue 10, item 4). Cheap enough to ask twice a second.
    ///
    /// # Errors
    /// [`NodeError::UnknownTransfer`] when no such download runs (a finished one is all
    /// here: its length is in its last [`DownloadProgress`]).
    pub async fn piece_map(&self, transfer: TransferId) -> Result<PieceMap, NodeError> {
        self.ask(|reply| Command::PieceMap { transfer, reply })
            .await?
    }

    /// Changes the bandwidth caps at once (links under way included) and whether downloads
    /// started from now on stay shared when complete.
    ///
    /// # Errors
    /// [`NodeError::Stopped`].
    pub async fn set_limits(&self, limits: TransferLimits) -> Result<(), NodeError> {
        self.ask(|reply| Command::SetLimits { limits, reply }).await
    }

    /// This node's clock for rooms, in ms since the node started (monotonic): the clock a
    /// hosted room's playback times (`at_ms`) and clock answers are on.
    pub fn clock_ms(&self) -> f64 {
        clock_ms(self.epoch)
    }

    /// Opens a room watching `info_hash` with this node as its host (docs/protocol.md §8).
    /// The node answers its members' clock pings itself, on [`NodeHandle::clock_ms`].
    ///
    /// # Errors
    /// Not connected, refused (too many rooms), or no answer in time.
    pub async fn create_room(&self, info_hash: InfoHash) -> Result<RoomInfo, NodeError> {
        match self
            .request(shoal_protocol::ClientToServer::CreateRoom {
                info_hash,
                request_id: None,
            })
            .await?
        {
            shoal_protocol::ServerToClient::RoomJoined { room, .. } => Ok(room),
            other => Err(NodeError::unexpected(&other)),
        }
    }

    /// Joins a room by its code or link; with its `host_key`, as its host again (after a
    /// reconnect).
    ///
    /// # Errors
    /// [`NodeError::Server`] with `unknown_room` (no such room), `not_host` (wrong key),
    /// `rate_limited` (too many tries); not connected; no answer in time.
    pub async fn join_room(
        &self,
        room: &str,
        host_key: Option<String>,
    ) -> Result<RoomInfo, NodeError> {
        match self
            .request(shoal_protocol::ClientToServer::JoinRoom {
                room: room.to_owned(),
                host_key,
                request_id: None,
            })
            .await?
        {
            shoal_protocol::ServerToClient::RoomJoined { room, .. } => Ok(room),
            other => Err(NodeError::unexpected(&other)),
        }
    }

    /// Leaves a room (as its host: ends it).
    ///
    /// # Errors
    /// Not connected.
    pub async fn leave_room(&self, room: &str) -> Result<(), NodeError> {
        let message = shoal_protocol::ClientToServer::LeaveRoom {
            room: room.to_owned(),
        };
        self.ask(|reply| Command::Post { message, reply }).await?
    }

    /// Says `body` to the room: to every other member, or to `to`. A refusal comes later as
    /// [`RoomEvent::Refused`].
    ///
    /// # Errors
    /// Not connected.
    pub async fn room_send(
        &self,
        room: &str,
        to: Option<NodeId>,
        body: RoomBody,
    ) -> Result<(), NodeError> {
        let message = shoal_protocol::ClientToServer::RoomSend {
            room: room.to_owned(),
            to,
            body,
        };
        self.ask(|reply| Command::Post { message, reply }).await?
    }

    /// Stops the node: saves download state, closes peer connections and the signaling
    /// connection.
    pub async fn shutdown(&self) {
        let _ = self.ask(|reply| Command::Shutdown { reply }).await;
    }
}
