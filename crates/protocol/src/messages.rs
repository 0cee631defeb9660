//! The message enums, one per direction, and the validation the server applies to them.

use serde::{Deserialize, Serialize};

use crate::{
    ConnectionId, InfoHash, MAX_ANNOUNCE_BATCH, MAX_MIME_BYTES, MAX_NAME_BYTES, MAX_QUERY_BYTES,
    NodeId,
};

/// What kind of media a file is; drives the category badge (seed 003, "类别标签").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// `audio/*`.
    Audio,
    /// `video/*`.
    Video,
    /// `image/*`.
    Image,
    /// Anything else.
    Other,
}

impl Category {
    /// The category of a MIME type such as `video/mp4` (by its top-level type).
    pub fn from_mime(mime: &str) -> Self {
        match mime
            .split('/')
            .next()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("audio") => Self::Audio,
            Some("video") => Self::Video,
            Some("image") => Self::Image,
            _ => Self::Other,
        }
    }

    /// The wire name: `audio`, `video`, `image` or `other`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Image => "image",
            Self::Other => "other",
        }
    }
}

impl std::str::FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "audio" => Ok(Self::Audio),
            "video" => Ok(Self::Video),
            "image" => Ok(Self::Image),
            "other" => Ok(Self::Other),
            _ => Err(format!(
                "unknown category {s:?}: expected audio, video, image or other"
            )),
        }
    }
}

/// One file a node offers, as it appears in `announce` (docs/protocol.md §4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAnnouncement {
    /// Content id: SHA-256 of the manifest.
    pub info_hash: InfoHash,
    /// Display name, at most [`MAX_NAME_BYTES`] bytes. Untrusted: a downloader sanitises it
    /// before it touches a file system.
    pub name: String,
    /// Length of the file in bytes.
    pub size: u64,
    /// MIME type, such as `video/mp4`; at most [`MAX_MIME_BYTES`] bytes.
    pub mime: String,
    /// Category badge.
    pub category: Category,
    /// The node holds only some pieces (a viewer still downloading, issue 10): it serves the
    /// pieces it has verified and lists them in its bitfield (`docs/wire.md`). Announcing the
    /// same info hash again with `false` once the file is complete moves the node to the
    /// complete holders. Absent means `false`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub partial: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl FileAnnouncement {
    /// Checks the length limits of the protocol.
    ///
    /// # Errors
    /// A sentence naming the broken limit.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("a file name must not be empty".into());
        }
        if self.name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "file name is {} bytes; the limit is {MAX_NAME_BYTES}",
                self.name.len()
            ));
        }
        if self.mime.len() > MAX_MIME_BYTES {
            return Err(format!(
                "MIME type is {} bytes; the limit is {MAX_MIME_BYTES}",
                self.mime.len()
            ));
        }
        Ok(())
    }
}

/// One entry of the server's file index, as answered by `list`, `search` and `lookup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedFile {
    /// Content id.
    pub info_hash: InfoHash,
    /// Name given by the first node that announced it.
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// MIME type.
    pub mime: String,
    /// Category badge.
    pub category: Category,
    /// Nodes that currently hold the whole file and serve it, oldest announcement first.
    pub holders: Vec<NodeId>,
    /// Nodes that hold part of the file and serve the pieces they have (viewers still
    /// downloading), oldest announcement first. Absent means none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial_holders: Vec<NodeId>,
}

impl IndexedFile {
    /// Complete and partial holders, complete ones first: the nodes a downloader may ask.
    pub fn all_holders(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.holders
            .iter()
            .chain(self.partial_holders.iter())
            .copied()
    }
}

/// A STUN or TURN server for ICE (W3C `RTCIceServer`; RFC 8489 STUN, RFC 8656 TURN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port?transport=udp` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceServer {
    /// The servers that command-line flags name (`--stun URL`, `--turn URL`,
    /// `--turn-username`, `--turn-credential`, as `shoal` and `shoal-signal` take them): one
    /// entry for the STUN URLs, one for the TURN URLs with the user name and password; none
    /// for a kind without URLs.
    pub fn from_flags(
        stun: &[String],
        turn: &[String],
        turn_username: Option<&str>,
        turn_credential: Option<&str>,
    ) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !stun.is_empty() {
            servers.push(IceServer {
                urls: stun.to_vec(),
                username: None,
                credential: None,
            });
        }
        if !turn.is_empty() {
            servers.push(IceServer {
                urls: turn.to_vec(),
                username: turn_username.map(str::to_owned),
                credential: turn_credential.map(str::to_owned),
            });
        }
        servers
    }
}

/// An ICE candidate as the W3C `RTCIceCandidateInit` dictionary writes it (RFC 8445, trickle
/// ICE RFC 8838). An empty `candidate` string marks the end of candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidateInit {
    /// The `candidate:` attribute line, as in SDP (RFC 8839 §5.1).
    pub candidate: String,
    /// The media stream identification tag the candidate belongs to.
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// Index of the m-line the candidate belongs to.
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    /// The ICE username fragment of the generation the candidate belongs to.
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// What a `signal` carries between two nodes: one step of the SDP offer/answer exchange
/// (RFC 3264, JSEP RFC 8829) or a trickled ICE candidate. Names from seed 001.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    /// An SDP offer.
    #[serde(rename = "webrtc_offer")]
    Offer {
        /// The session description.
        sdp: String,
    },
    /// An SDP answer.
    #[serde(rename = "webrtc_answer")]
    Answer {
        /// The session description.
        sdp: String,
    },
    /// One ICE candidate.
    #[serde(rename = "webrtc_ice_candidate")]
    IceCandidate {
        /// The candidate.
        candidate: IceCandidateInit,
    },
    /// The sender closed this peer connection; the receiver may drop it at once.
    #[serde(rename = "bye")]
    Bye,
}

/// How a room member's player is doing (docs/protocol.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberPlayback {
    /// Playing.
    Playing,
    /// Paused.
    Paused,
    /// Waiting for data it does not have yet.
    Buffering,
}

impl MemberPlayback {
    /// Its name on the wire: `playing`, `paused` or `buffering`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Playing => "playing",
            Self::Paused => "paused",
            Self::Buffering => "buffering",
        }
    }
}

/// What a room member says through the room (docs/protocol.md §8; issue 11, seed 000's room
/// module). The server relays it with the sender stamped; the kinds marked "host only" are
/// refused from any other member with `not_host`. Times are milliseconds; `at_ms`, `t1` and
/// `t2` are on the host's clock, `t0` on the member's (NTP's four timestamps, RFC 5905 §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomBody {
    /// Host only: the room's playback. At host time `at_ms` the media is at `position_ms`,
    /// playing at `rate` or paused; `at_ms` may be slightly in the future so that every
    /// member starts together.
    Playback {
        /// Playing (true) or paused.
        playing: bool,
        /// Media position at `at_ms`, ms.
        position_ms: f64,
        /// Playback rate while playing, 0.25 to 4.
        rate: f64,
        /// Host clock time the state holds from, ms.
        at_ms: f64,
    },
    /// Host only: the room holds playback for `member` (buffering), or for nobody.
    Waiting {
        /// The member waited for; absent: nobody.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<NodeId>,
    },
    /// Any member, to the host: a clock ping.
    ClockPing {
        /// Names the exchange.
        id: u64,
        /// The member's clock when it sent this, ms.
        t0: f64,
    },
    /// Host only, to the member that pinged: the answer.
    ClockPong {
        /// The ping's id.
        id: u64,
        /// The ping's `t0`.
        t0: f64,
        /// The host's clock when the ping came, ms.
        t1: f64,
        /// The host's clock when it answered, ms.
        t2: f64,
    },
    /// Any member: how its player and its download of the room's media are doing (seed
    /// 000's `torrent:progress` and `torrent:completed`).
    MemberState {
        /// Playing, paused or buffering.
        state: MemberPlayback,
        /// The player's position, ms.
        position_ms: f64,
        /// Share of the media downloaded, 0 to 1.
        progress: f64,
        /// Its position minus the host's, ms, when it follows the host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drift_ms: Option<f64>,
        /// Its round trip to the host, ms (the host stamps commands about twice the largest
        /// ahead).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rtt_ms: Option<f64>,
        /// The name the member goes by, free text of at most [`MAX_MEMBER_NAME_BYTES`]
        /// bytes (shown through [`crate::text::inert`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
}

/// Longest member name in `member_state`, in bytes.
pub const MAX_MEMBER_NAME_BYTES: usize = 64;

impl RoomBody {
    /// Whether only the room's host may send it.
    pub fn host_only(&self) -> bool {
        matches!(
            self,
            Self::Playback { .. } | Self::Waiting { .. } | Self::ClockPong { .. }
        )
    }

    /// Checks its numbers: finite, a position of at least 0, a rate from 0.25 to 4, a
    /// progress from 0 to 1.
    ///
    /// # Errors
    /// A sentence naming the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let finite = |name: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number"))
            }
        };
        match self {
            Self::Playback {
                position_ms,
                rate,
                at_ms,
                ..
            } => {
                finite("position_ms", *position_ms)?;
                finite("at_ms", *at_ms)?;
                if *position_ms < 0.0 {
                    return Err("position_ms must not be negative".into());
                }
                if !(0.25..=4.0).contains(rate) {
                    return Err("rate must be from 0.25 to 4".into());
                }
                Ok(())
            }
            Self::Waiting { .. } => Ok(()),
            Self::ClockPing { t0, .. } => finite("t0", *t0),
            Self::ClockPong { t0, t1, t2, .. } => {
                finite("t0", *t0)?;
                finite("t1", *t1)?;
                finite("t2", *t2)
            }
            Self::MemberState {
                position_ms,
                progress,
                drift_ms,
                rtt_ms,
                name,
                ..
            } => {
                finite("position_ms", *position_ms)?;
                if let Some(d) = drift_ms {
                    finite("drift_ms", *d)?;
                }
                if let Some(r) = rtt_ms {
                    finite("rtt_ms", *r)?;
                    if *r < 0.0 {
                        return Err("rtt_ms must not be negative".into());
                    }
                }
                if name
                    .as_ref()
                    .is_some_and(|n| n.len() > MAX_MEMBER_NAME_BYTES)
                {
                    return Err(format!("name is at most {MAX_MEMBER_NAME_BYTES} bytes"));
                }
                if !(0.0..=1.0).contains(progress) {
                    return Err("progress must be from 0 to 1".into());
                }
                Ok(())
            }
        }
    }
}

/// A room as a member sees it (docs/protocol.md §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The short code people read out, `XXXX-XXXX` (Crockford's base 32).
    pub code: String,
    /// The long form for pasting: 32 hex digits (128 bits). `join_room` takes either.
    pub link: String,
    /// The media the room watches.
    pub info_hash: InfoHash,
    /// The host; absent while the host is reconnecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<NodeId>,
    /// Every member, the host included, in the order they joined.
    pub members: Vec<NodeId>,
    /// Sent to the host only: the key that makes a new connection the host again after a
    /// reconnect (`join_room` with `host_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// The host's last `playback`, so a member that joins is in step at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback: Option<RoomBody>,
}

/// Longest room code or link token accepted, in bytes.
const MAX_ROOM_TEXT_BYTES: usize = 64;

/// Messages a node sends to the signaling server (docs/protocol.md §3-§8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientToServer {
    /// First message of every connection.
    Hello {
        /// Must equal [`crate::PROTOCOL_VERSION`].
        version: u32,
        /// Free text naming the client software, for logs (`shoal-cli/0.1.0`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    /// Adds files this node serves to the index. At most [`MAX_ANNOUNCE_BATCH`] per message.
    Announce {
        /// The files.
        files: Vec<FileAnnouncement>,
        /// Echoed in `announced` or `error`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Removes files this node no longer serves.
    Unannounce {
        /// Their info hashes. Unknown ones are ignored.
        info_hashes: Vec<InfoHash>,
    },
    /// Asks for the index, optionally one category; answered by `list_result`.
    List {
        /// Only this category.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<Category>,
        /// Echoed in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Searches names; answered by `search_result`.
    Search {
        /// Words, matched case-insensitively; every word must occur in the name.
        query: String,
        /// Only this category.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<Category>,
        /// Echoed in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Asks for one index entry and its holders; answered by `lookup_result`.
    Lookup {
        /// The content id.
        info_hash: InfoHash,
        /// Echoed in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Relays an offer, answer or ICE candidate to another node.
    Signal {
        /// The receiving node.
        to: NodeId,
        /// The peer connection this belongs to.
        connection_id: ConnectionId,
        /// The payload.
        signal: Signal,
    },
    /// Asks for the server's figures; answered by `status`. Allowed before `hello`.
    Status {
        /// Echoed in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Opens a room watching `info_hash` with this node as its host; answered by
    /// `room_joined`.
    CreateRoom {
        /// The media.
        info_hash: InfoHash,
        /// Echoed in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Joins a room by its code or link; answered by `room_joined`. With the room's
    /// `host_key`, this connection becomes its host (after a reconnect).
    JoinRoom {
        /// The code (`XXXX-XXXX`; case, dashes and spaces do not matter) or the link.
        room: String,
        /// The host key from `room_joined`, to take the room back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_key: Option<String>,
        /// Echoed in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
    /// Leaves a room. The host leaving ends it.
    LeaveRoom {
        /// The room's code.
        room: String,
    },
    /// Says something to the room: to every other member, or to one.
    RoomSend {
        /// The room's code.
        room: String,
        /// Only this member; absent: every other member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<NodeId>,
        /// What.
        body: RoomBody,
    },
}

impl ClientToServer {
    /// The wire names of every variant, for `unknown_type` errors and documentation.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "announce",
        "unannounce",
        "list",
        "search",
        "lookup",
        "signal",
        "status",
        "create_room",
        "join_room",
        "leave_room",
        "room_send",
    ];

    /// The `request_id` the message carries, if any (echoed in errors about it).
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Self::Announce { request_id, .. }
            | Self::List { request_id, .. }
            | Self::Search { request_id, .. }
            | Self::Lookup { request_id, .. }
            | Self::CreateRoom { request_id, .. }
            | Self::JoinRoom { request_id, .. }
            | Self::Status { request_id } => *request_id,
            Self::Hello { .. }
            | Self::Unannounce { .. }
            | Self::Signal { .. }
            | Self::LeaveRoom { .. }
            | Self::RoomSend { .. } => None,
        }
    }

    /// Sets the `request_id` of a message that is answered (announce, list, search, lookup,
    /// status); other messages have none and are left as they are.
    pub fn set_request_id(&mut self, id: u64) {
        match self {
            Self::Announce { request_id, .. }
            | Self::List { request_id, .. }
            | Self::Search { request_id, .. }
            | Self::Lookup { request_id, .. }
            | Self::CreateRoom { request_id, .. }
            | Self::JoinRoom { request_id, .. }
            | Self::Status { request_id } => *request_id = Some(id),
            Self::Hello { .. }
            | Self::Unannounce { .. }
            | Self::Signal { .. }
            | Self::LeaveRoom { .. }
            | Self::RoomSend { .. } => {}
        }
    }

    /// Checks the protocol's limits that serde cannot express.
    ///
    /// # Errors
    /// A sentence naming the broken limit.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::Announce { files, .. } => {
                if files.len() > MAX_ANNOUNCE_BATCH {
                    return Err(format!(
                        "announce carries {} files; at most {MAX_ANNOUNCE_BATCH} per message",
                        files.len()
                    ));
                }
                files.iter().try_for_each(FileAnnouncement::validate)
            }
            Self::Search { query, .. } if query.len() > MAX_QUERY_BYTES => Err(format!(
                "search query is {} bytes; the limit is {MAX_QUERY_BYTES}",
                query.len()
            )),
            Self::JoinRoom { room, host_key, .. } => {
                if room.len() > MAX_ROOM_TEXT_BYTES
                    || host_key
                        .as_ref()
                        .is_some_and(|k| k.len() > MAX_ROOM_TEXT_BYTES)
                {
                    return Err(format!(
                        "a room code, link or host key is at most {MAX_ROOM_TEXT_BYTES} bytes"
                    ));
                }
                Ok(())
            }
            Self::LeaveRoom { room } if room.len() > MAX_ROOM_TEXT_BYTES => Err(format!(
                "a room code is at most {MAX_ROOM_TEXT_BYTES} bytes"
            )),
            Self::RoomSend { room, .. } if room.len() > MAX_ROOM_TEXT_BYTES => Err(format!(
                "a room code is at most {MAX_ROOM_TEXT_BYTES} bytes"
            )),
            _ => Ok(()),
        }
    }
}

/// The server's figures (seed 004, "状态监控"): answered to `status` and printed on stderr.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// Connected nodes that completed `hello`.
    pub nodes: u64,
    /// Distinct info hashes in the index.
    pub files: u64,
    /// (node, info hash) pairs in the index.
    pub holders: u64,
    /// Signals relayed since start.
    pub relayed_total: u64,
    /// Signals relayed per second over the last status interval.
    pub relayed_per_sec: f64,
    /// Resident memory of the server process in bytes (0 where unknown).
    pub rss_bytes: u64,
    /// Time since the server started, in milliseconds.
    pub uptime_ms: u64,
}

/// Error codes of `error` messages (docs/protocol.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// `hello` named a protocol version the server does not speak; the server closes.
    UnsupportedVersion,
    /// A message other than `hello` or `status` came before `hello`.
    HelloRequired,
    /// A second `hello` on the same connection.
    DuplicateHello,
    /// The text is not JSON, or nests deeper than [`crate::MAX_JSON_DEPTH`] levels.
    MalformedJson,
    /// The JSON has no `type`, or one this server does not know.
    UnknownType,
    /// The `type` is known but a field is missing or has the wrong type.
    InvalidMessage,
    /// A limit was exceeded: name length, files per node, batch size, query length.
    LimitExceeded,
    /// The node a `signal` was addressed to is not connected.
    UnknownPeer,
    /// The node a `signal` was addressed to is not reading fast enough; the signal was
    /// dropped.
    PeerBusy,
    /// The server holds its limit of queued signals over all nodes; the signal was dropped.
    ServerBusy,
    /// Index changes or queries came faster than this connection's rate (docs/protocol.md
    /// §2); the message was not acted on.
    RateLimited,
    /// The server holds its limit of nodes; `hello` is refused and the connection closed
    /// with 1013 (try again later). `status` is still answered.
    ServerFull,
    /// No room has this code or link (or this node is not in it).
    UnknownRoom,
    /// Only the room's host may send this (a playback change, a wait, a clock answer), or
    /// the host key is wrong.
    NotHost,
    /// A code this version does not know (from a newer server); `reason` says what happened.
    #[serde(other)]
    Unknown,
}

/// Messages the signaling server sends to a node (docs/protocol.md §3-§10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerToClient {
    /// Answer to `hello`.
    Welcome {
        /// The server's protocol version.
        version: u32,
        /// This connection's anonymous node id.
        node_id: NodeId,
        /// STUN/TURN servers to use for ICE.
        ice_servers: Vec<IceServer>,
        /// How often the server pings, in milliseconds. A client silent for three intervals
        /// is dropped.
        heartbeat_interval_ms: u64,
    },
    /// Confirms an `announce`: these files are now in the index under this node.
    Announced {
        /// Echo of the request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// Info hashes accepted.
        info_hashes: Vec<InfoHash>,
    },
    /// The index changed; fetch it again if you show it (seed 003). Coalesced: at most a few
    /// per second whatever the rate of changes.
    IndexChanged {
        /// Increases with every change.
        revision: u64,
    },
    /// Answer to `list`.
    ListResult {
        /// Echo of the request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// Matching entries, sorted by name, at most [`crate::MAX_LIST_RESULTS`].
        files: Vec<IndexedFile>,
        /// How many entries matched before truncation.
        total: u64,
    },
    /// Answer to `search`.
    SearchResult {
        /// Echo of the request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// Matching entries, sorted by name, at most [`crate::MAX_SEARCH_RESULTS`].
        files: Vec<IndexedFile>,
        /// How many entries matched before truncation.
        total: u64,
    },
    /// Answer to `lookup`.
    LookupResult {
        /// Echo of the request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// The info hash asked for.
        info_hash: InfoHash,
        /// The entry, or `null` when no connected node holds it.
        file: Option<IndexedFile>,
    },
    /// A relayed offer, answer or ICE candidate.
    Signal {
        /// The sending node, stamped by the server from the connection it came in on.
        from: NodeId,
        /// The peer connection this belongs to.
        connection_id: ConnectionId,
        /// The payload.
        signal: Signal,
    },
    /// Answer to `status`.
    Status {
        /// Echo of the request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// The figures.
        #[serde(flatten)]
        status: ServerStatus,
    },
    /// Answer to `create_room` and `join_room`: the room joined.
    RoomJoined {
        /// Echo of the request's id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
        /// The room.
        room: RoomInfo,
    },
    /// The room's members changed (someone joined, left, or the host changed).
    RoomMembers {
        /// The room's code.
        room: String,
        /// The host; absent while the host is reconnecting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<NodeId>,
        /// Every member, the host included.
        members: Vec<NodeId>,
    },
    /// A member said something to the room.
    RoomMessage {
        /// The room's code.
        room: String,
        /// The sender, stamped by the server.
        from: NodeId,
        /// What.
        body: RoomBody,
    },
    /// The room ended.
    RoomClosed {
        /// The room's code.
        room: String,
        /// Why, in words.
        reason: String,
    },
    /// Something the client sent was refused.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// A sentence for people.
        reason: String,
        /// The `request_id` of the refused request, when it had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<u64>,
    },
}

impl ServerToClient {
    /// The `request_id` echoed by an answer or error, if any.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            Self::Announced { request_id, .. }
            | Self::ListResult { request_id, .. }
            | Self::SearchResult { request_id, .. }
            | Self::LookupResult { request_id, .. }
            | Self::Status { request_id, .. }
            | Self::RoomJoined { request_id, .. }
            | Self::Error { request_id, .. } => *request_id,
            Self::Welcome { .. }
            | Self::IndexChanged { .. }
            | Self::Signal { .. }
            | Self::RoomMembers { .. }
            | Self::RoomMessage { .. }
            | Self::RoomClosed { .. } => None,
        }
    }
}

/// Why a client's text frame was refused, with the code the server answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {reason}")]
pub struct DecodeError {
    /// The error code.
    pub code: ErrorCode,
    /// A sentence for people.
    pub reason: String,
}

/// Parses and validates one client message.
///
/// Steps: JSON (nesting past [`crate::MAX_JSON_DEPTH`] is refused), then the `type`
/// tag against [`ClientToServer::TYPES`], then the fields, then [`ClientToServer::validate`].
///
/// # Errors
/// [`DecodeError`] with `malformed_json`, `unknown_type`, `invalid_message` or
/// `limit_exceeded`.
pub fn decode_client_message(text: &str) -> Result<ClientToServer, DecodeError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError {
        code: ErrorCode::MalformedJson,
        reason: format!("not valid JSON: {e}"),
    })?;
    let kind = match value.get("type") {
        Some(serde_json::Value::String(kind)) => kind.clone(),
        Some(_) => {
            return Err(DecodeError {
                code: ErrorCode::UnknownType,
                reason: "the \"type\" field must be a string".into(),
            });
        }
        None => {
            return Err(DecodeError {
                code: ErrorCode::UnknownType,
                reason: "a message must be a JSON object with a \"type\" field".into(),
            });
        }
    };
    if !ClientToServer::TYPES.contains(&kind.as_str()) {
        let mut shown: String = kind.chars().take(40).collect();
        if shown.len() < kind.len() {
            shown.push('…');
        }
        return Err(DecodeError {
            code: ErrorCode::UnknownType,
            reason: format!(
                "unknown message type {shown:?}; expected one of {}",
                ClientToServer::TYPES.join(", ")
            ),
        });
    }
    let message: ClientToServer = serde_json::from_value(value).map_err(|e| DecodeError {
        code: ErrorCode::InvalidMessage,
        reason: format!("bad {kind} message: {e}"),
    })?;
    // A room message's numbers are its shape, not a limit.
    if let ClientToServer::RoomSend { body, .. } = &message {
        body.validate().map_err(|reason| DecodeError {
            code: ErrorCode::InvalidMessage,
            reason: format!("bad room_send message: {reason}"),
        })?;
    }
    message.validate().map_err(|reason| DecodeError {
        code: ErrorCode::LimitExceeded,
        reason,
    })?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_follows_the_top_level_mime_type() {
        assert_eq!(Category::from_mime("video/mp4"), Category::Video);
        assert_eq!(Category::from_mime("Audio/FLAC"), Category::Audio);
        assert_eq!(Category::from_mime("image/jpeg"), Category::Image);
        assert_eq!(Category::from_mime("application/pdf"), Category::Other);
        assert_eq!(Category::from_mime(""), Category::Other);
    }

    #[test]
    fn request_ids_are_set_and_read_back() {
        let mut list = ClientToServer::List {
            category: None,
            request_id: None,
        };
        list.set_request_id(7);
        assert_eq!(list.request_id(), Some(7));
        let mut hello = ClientToServer::Hello {
            version: 1,
            agent: None,
        };
        hello.set_request_id(7);
        assert_eq!(hello.request_id(), None, "hello is not answered by id");
        let error = ServerToClient::Error {
            code: ErrorCode::UnknownPeer,
            reason: String::new(),
            request_id: Some(3),
        };
        assert_eq!(error.request_id(), Some(3));
        let newer: ServerToClient =
            serde_json::from_str(r#"{"type":"error","code":"from_the_future","reason":"r"}"#)
                .expect("an unknown code still parses");
        assert!(matches!(
            newer,
            ServerToClient::Error {
                code: ErrorCode::Unknown,
                ..
            }
        ));
    }

    #[test]
    fn decode_reports_each_kind_of_bad_input() {
        let code = |t: &str| decode_client_message(t).map_err(|e| e.code);
        assert_eq!(code("{nope"), Err(ErrorCode::MalformedJson));
        assert_eq!(code("[1,2]"), Err(ErrorCode::UnknownType));
        assert_eq!(code(r#"{"type":"launch"}"#), Err(ErrorCode::UnknownType));
        assert_eq!(code(r#"{"type":7}"#), Err(ErrorCode::UnknownType));
        assert_eq!(
            code(r#"{"type":"hello","version":"one"}"#),
            Err(ErrorCode::InvalidMessage)
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(&deep), Err(ErrorCode::MalformedJson));
        // Issue 8, item 12: the documented bound, exactly (docs/protocol.md §2).
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(
            code(&nested(crate::MAX_JSON_DEPTH)),
            Err(ErrorCode::UnknownType)
        );
        assert_eq!(
            code(&nested(crate::MAX_JSON_DEPTH + 1)),
            Err(ErrorCode::MalformedJson)
        );
        let long_name = format!(
            r#"{{"type":"announce","files":[{{"info_hash":"{}","name":"{}","size":1,"mime":"video/mp4","category":"video"}}]}}"#,
            "0".repeat(64),
            "n".repeat(300)
        );
        assert_eq!(code(&long_name), Err(ErrorCode::LimitExceeded));
    }
}
