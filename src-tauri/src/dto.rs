//! JSON shapes at the UI boundary (docs/app-ipc.md). Core types stay in the node; these are
//! what the webview sees, in camelCase.

use shoal_node::text::inert;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shoal_node::{Category, ConnectionState, IndexedFile, NodeError, NodeId, SharedFile};

use crate::settings::{Settings, SettingsError};

/// `Connection` in docs/app-ipc.md.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Connection {
    /// Opening the WebSocket.
    Connecting {
        /// Server URL.
        url: String,
    },
    /// Connected.
    #[serde(rename_all = "camelCase")]
    Connected {
        /// Server URL.
        url: String,
        /// Full node id.
        node_id: String,
        /// First 8 hex digits.
        short_id: String,
    },
    /// Lost; retrying.
    #[serde(rename_all = "camelCase")]
    Disconnected {
        /// Server URL.
        url: String,
        /// Why, in words.
        reason: String,
        /// Seconds until the next attempt.
        retry_in_secs: u64,
    },
}

impl From<ConnectionState> for Connection {
    fn from(state: ConnectionState) -> Self {
        match state {
            ConnectionState::Connecting { url } => Self::Connecting { url },
            ConnectionState::Connected { url, node_id } => Self::Connected {
                url,
                node_id: node_id.to_string(),
                short_id: node_id.short(),
            },
            ConnectionState::Disconnected {
                url,
                reason,
                retry_in,
            } => Self::Disconnected {
                url,
                reason,
                retry_in_secs: retry_in.as_secs(),
            },
        }
    }
}

/// `Share`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// Content id, hex.
    pub info_hash: String,
    /// File name.
    pub name: String,
    /// Original path.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// MIME type.
    pub mime: String,
    /// Category.
    pub category: Category,
    /// Why it is not shared now (its file is gone or unreadable); `null` when it is.
    pub missing: Option<String>,
    /// What it serves.
    pub upload: Upload,
}

/// `Upload`: what one share serves (sent with `upload` events while it changes).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    /// Content id, hex.
    pub info_hash: String,
    /// Nodes connected to it now.
    pub peers: usize,
    /// Bytes sent since it was shared.
    pub sent_bytes: u64,
    /// Over the last second.
    pub rate_bytes_per_sec: f64,
    /// Nodes sent at least one whole piece since it was shared.
    pub peers_served: usize,
}

impl From<&SharedFile> for Share {
    fn from(s: &SharedFile) -> Self {
        Self {
            info_hash: s.info_hash.to_string(),
            name: s.name.clone(),
            path: s.path.clone(),
            size: s.size,
            mime: s.mime.clone(),
            category: s.category,
            missing: None,
            upload: Upload {
                info_hash: s.info_hash.to_string(),
                ..Upload::default()
            },
        }
    }
}

/// `Hashing`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hashing {
    /// The file.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// Bytes hashed.
    pub bytes_done: u64,
    /// File length.
    pub len_bytes: u64,
}

/// `NetworkFile`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkFile {
    /// Content id, hex.
    pub info_hash: String,
    /// Name.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// MIME type.
    pub mime: String,
    /// Category.
    pub category: Category,
    /// Number of nodes that serve the whole file.
    pub holders: usize,
    /// Number of nodes that serve the part they have (viewers still downloading).
    pub partial_holders: usize,
    /// Whether this node serves the whole file.
    pub mine: bool,
}

impl NetworkFile {
    /// From an index entry, knowing this node's id.
    pub fn new(file: IndexedFile, me: Option<NodeId>) -> Self {
        Self {
            info_hash: file.info_hash.to_string(),
            mine: me.is_some_and(|me| file.holders.contains(&me)),
            holders: file.holders.len(),
            partial_holders: file.partial_holders.len(),
            // Names come from the network: no controls, bidi overrides or invisible
            // characters reach the page (shoal_protocol::text).
            name: inert(&file.name, usize::MAX).into_owned(),
            size: file.size,
            mime: inert(&file.mime, usize::MAX).into_owned(),
            category: file.category,
        }
    }
}

/// `PeerInfo`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// Short node id.
    pub peer: String,
    /// host, srflx, prflx, relay or unknown.
    pub candidate_type: String,
}

/// `Transfer` state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TransferState {
    /// Downloading.
    Running,
    /// Not running: no sharer is online (or the server is not reached yet). Resumes by itself
    /// when the file shows up in the index.
    Waiting,
    /// Done; `path` is set.
    Completed,
    /// Failed; `error` says why.
    Failed,
    /// Cancelled by the user.
    Cancelled,
}

/// Why a download waits or stopped (`Problem` in docs/app-ipc.md). The UI chooses its words
/// from the kind and the transfer's state; only `other` carries a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Problem {
    /// The signaling server is not reached (yet).
    NoServer,
    /// No sharer is online: the sharer stopped sharing or went offline, or every sharer
    /// failed.
    SharerGone,
    /// Not resumed, because resuming by itself is off in Settings.
    NotResumed,
    /// The disk is full.
    DiskFull,
    /// The file could not be created or written (permissions, a missing folder, I/O).
    Storage,
    /// Anything else, in words.
    Other {
        /// The sentence (inert: it may quote names from the network).
        message: String,
    },
}

/// `Transfer`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// Id.
    pub id: u64,
    /// Content id, hex.
    pub info_hash: String,
    /// File name.
    pub name: String,
    /// State.
    pub state: TransferState,
    /// Bytes verified.
    pub bytes_done: u64,
    /// File length.
    pub len_bytes: u64,
    /// Bytes per second over the last second.
    pub rate_bytes_per_sec: f64,
    /// Bytes sent to other viewers from the pieces already here, this run.
    pub sent_bytes: u64,
    /// Bytes per second sent over the last second.
    pub upload_rate_bytes_per_sec: f64,
    /// Nodes sent at least one whole piece, this run.
    pub peers_served: usize,
    /// Seconds left at the current rate.
    pub eta_secs: Option<u64>,
    /// Peers and how each is reached.
    pub peers: Vec<PeerInfo>,
    /// The finished file.
    pub path: Option<PathBuf>,
    /// Why it waits or stopped; `None` while running, done or cancelled.
    pub problem: Option<Problem>,
    /// Category (from the name).
    pub category: Category,
    /// MIME type (from the name).
    pub mime: String,
}

impl Transfer {
    /// A transfer that just started.
    pub fn new(id: u64, info_hash: String, name: String, len_bytes: u64) -> Self {
        let mime = mime_guess::from_path(&name)
            .first_raw()
            .unwrap_or("application/octet-stream")
            .to_owned();
        Self {
            id,
            info_hash,
            category: Category::from_mime(&mime),
            mime,
            name: inert(&name, usize::MAX).into_owned(),
            state: TransferState::Running,
            bytes_done: 0,
            len_bytes,
            rate_bytes_per_sec: 0.0,
            sent_bytes: 0,
            upload_rate_bytes_per_sec: 0.0,
            peers_served: 0,
            eta_secs: None,
            peers: Vec::new(),
            path: None,
            problem: None,
        }
    }
}

/// `Watch`: what `watch` answers: where the player reads a file (issue 10, item 4).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Watch {
    /// `http://127.0.0.1:<port>/<token>/<info hash>/<name>`: the file, HTTP Range requests.
    pub url: String,
    /// The app's id of the download the player drives; `None` when the file is here.
    pub transfer: Option<u64>,
    /// The local file (a share or a finished download); `None` while it downloads.
    pub path: Option<PathBuf>,
}

/// `Room`: the room this app is in, as `create_room` and `join_room` answer (issue 11).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    /// The short code, `XXXX-XXXX`.
    pub code: String,
    /// The long form for pasting (32 hex digits).
    pub link: String,
    /// The media's info hash.
    pub info_hash: String,
    /// The media's name.
    pub name: String,
    /// Whether this app is the room's host.
    pub is_host: bool,
    /// Where the player reads the media (as `watch`).
    pub watch: Watch,
}

/// `PlayerReport`: the room player's state, sent with every `room_tick`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayerReport {
    /// `currentTime` x 1000, ms.
    pub position_ms: f64,
    /// Not paused.
    pub playing: bool,
    /// A seek is under way.
    pub seeking: bool,
    /// `readyState` >= HAVE_FUTURE_DATA (3), or the media has ended.
    pub ready: bool,
    /// `playbackRate`.
    pub rate: f64,
}

/// `PlayerAction`: what the room's player must do now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PlayerAction {
    /// `play()`.
    Play,
    /// `pause()`.
    Pause,
    /// `currentTime = positionMs / 1000`.
    #[serde(rename_all = "camelCase")]
    Seek {
        /// Where, ms.
        position_ms: f64,
    },
    /// `playbackRate = rate`.
    Rate {
        /// The rate (1 = normal).
        rate: f64,
    },
}

/// `RoomMember`: one member in the room's list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomMember {
    /// Node id.
    pub id: String,
    /// Its name (inert text), or the start of its node id.
    pub name: String,
    /// The room's host.
    pub is_host: bool,
    /// This app.
    pub is_me: bool,
    /// `playing`, `paused` or `buffering`; `null` before its first report.
    pub state: Option<String>,
    /// Its player's position, ms.
    pub position_ms: f64,
    /// Share of the media it has, 0 to 1.
    pub progress: f64,
    /// Its position minus the host's, ms.
    pub drift_ms: Option<f64>,
}

/// `RoomTick`: what `room_tick` answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomTick {
    /// What the player must do, in order.
    pub actions: Vec<PlayerAction>,
    /// Everyone in the room, in the order they joined.
    pub members: Vec<RoomMember>,
    /// "Bob (buffering, 42 %)" while the room waits for a member.
    pub waiting_for: Option<String>,
    /// The room ended: why.
    pub closed: Option<String>,
    /// Where the host's media is now, ms; `null` before the clock is known.
    pub host_position_ms: Option<f64>,
    /// This player's position minus the host's, ms.
    pub drift_ms: Option<f64>,
    /// The room plays now.
    pub playing: bool,
    /// The host asked for playing (the room may be held for a member).
    pub host_wants_playing: bool,
    /// When to tick next, ms from now (0 to 100): sooner than the usual 100 ms when the
    /// player must start on time (the end of a hold after a seek, a play command's start).
    pub next_tick_ms: f64,
    /// The room's live stream (issue 12), while there is one.
    pub live: Option<LiveTick>,
}

/// `LiveTick`: the room's host streams live over media tracks (issue 12).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveTick {
    /// This app is the one streaming.
    pub hosting: bool,
    /// A member's: the loopback URL of the stream as fragmented MP4, for Media Source
    /// Extensions (`Content-Type` names the codecs); `null` for the host.
    pub url: Option<String>,
    /// What is sent, in words: "H.264 video (AAC audio left out: WebRTC carries no AAC)".
    pub summary: String,
}

/// `PieceMap`: which bytes of a download are here, on their way or missing, as
/// `[start, end)` byte ranges, ascending (issue 10, item 4).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PieceMap {
    /// File length in bytes (0 until the manifest is known).
    pub len_bytes: u64,
    /// Verified and written.
    pub have: Vec<(u64, u64)>,
    /// Requested from a peer or being written.
    pub in_flight: Vec<(u64, u64)>,
}

impl From<shoal_node::PieceMap> for PieceMap {
    fn from(m: shoal_node::PieceMap) -> Self {
        let pairs =
            |v: Vec<std::ops::Range<u64>>| v.into_iter().map(|r| (r.start, r.end)).collect();
        Self {
            len_bytes: m.len_bytes,
            have: pairs(m.have),
            in_flight: pairs(m.in_flight),
        }
    }
}

/// `LogEntry`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// info, warn or error.
    pub level: &'static str,
    /// A sentence.
    pub message: String,
}

impl LogEntry {
    /// An entry stamped now.
    pub fn new(level: &'static str, message: impl Into<String>) -> Self {
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let message = message.into();
        Self {
            time_ms,
            level,
            // Messages quote names and reasons from the network.
            message: inert(&message, usize::MAX).into_owned(),
        }
    }
}

/// `AppState["hosting"]`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostingInfo {
    /// `0.0.0.0:<port>`.
    pub listening: String,
    /// `ws://<LAN address>:<port>` for others.
    pub share_urls: Vec<String>,
}

/// `HostingProblem`: hosting is switched on but the server could not start.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostingProblem {
    /// What happened and what the app does instead, in words.
    pub message: String,
    /// The port that could not be used.
    pub port: u16,
    /// A port that was free a moment ago (the next ones after `port`), if any.
    pub free_port: Option<u16>,
}

/// `AppState`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppState {
    /// Settings.
    pub settings: Settings,
    /// Signaling connection.
    pub connection: Connection,
    /// Hosting, if on.
    pub hosting: Option<HostingInfo>,
    /// Why hosting is on but not running.
    pub hosting_problem: Option<HostingProblem>,
    /// Shares.
    pub shares: Vec<Share>,
    /// Files being hashed.
    pub hashing: Vec<Hashing>,
    /// Transfers, newest first.
    pub transfers: Vec<Transfer>,
    /// Log, oldest first.
    pub log: Vec<LogEntry>,
}

/// `UiEvent`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum UiEvent {
    /// Signaling connection changed.
    Connection {
        /// New state.
        connection: Connection,
    },
    /// Hosting changed.
    Hosting {
        /// New state.
        hosting: Option<HostingInfo>,
        /// Why the app does not host although the host switch is on.
        problem: Option<HostingProblem>,
    },
    /// Hashing progress.
    Hashing {
        /// Progress.
        hashing: Hashing,
    },
    /// A file is shared.
    Shared {
        /// It.
        share: Share,
    },
    /// A share ended.
    #[serde(rename_all = "camelCase")]
    Unshared {
        /// Content id, hex.
        info_hash: String,
        /// Why, if it ended on its own.
        reason: Option<String>,
        /// The file, when sharing failed before it had an info hash.
        path: Option<PathBuf>,
    },
    /// The network's index changed.
    IndexChanged,
    /// What a share serves changed (frequent: on the Channel).
    Upload {
        /// It.
        upload: Upload,
    },
    /// A transfer changed.
    Transfer {
        /// It.
        transfer: Transfer,
    },
    /// A log line.
    Log {
        /// It.
        entry: LogEntry,
    },
    /// Something the user should see now (also in the log): a short notice.
    Notice {
        /// It.
        entry: LogEntry,
    },
    /// Settings changed.
    Settings {
        /// They.
        settings: Settings,
    },
}

/// `{ code, message }` for rejected commands.
#[derive(Debug, Clone, Serialize)]
pub struct UiError {
    /// Machine-readable code (docs/app-ipc.md).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl UiError {
    /// An error with a code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<NodeError> for UiError {
    fn from(e: NodeError) -> Self {
        let code = match &e {
            NodeError::NotConnected { .. } | NodeError::Stopped => "not_connected",
            NodeError::Timeout { .. } => "timeout",
            NodeError::Server { .. } | NodeError::Unexpected(_) => "server_refused",
            NodeError::UnknownInfoHash { .. } => "unknown_content",
            NodeError::NoHolders { .. } | NodeError::SourcesFailed { .. } => "no_holders",
            NodeError::NotShared { .. } => "not_shared",
            NodeError::AlreadyDownloading { .. } => "already_downloading",
            NodeError::UnknownTransfer(_) => "unknown_transfer",
            NodeError::Storage(_) | NodeError::NotPlayable { .. } => "file",
            NodeError::Live(_) => "live",
            _ => "internal",
        };
        let message = match &e {
            NodeError::NotConnected { url } => {
                format!(
                    "Not connected to the signaling server ({url}). Check the address in Settings."
                )
            }
            other => {
                let text = other.to_string();
                let mut chars = text.chars();
                match chars.next() {
                    Some(first) => first.to_uppercase().chain(chars).collect(),
                    None => text,
                }
            }
        };
        Self { code, message }
    }
}

impl From<SettingsError> for UiError {
    fn from(e: SettingsError) -> Self {
        Self::new("settings", e.to_string())
    }
}
