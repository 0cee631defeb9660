//! Shoal's signaling messages (serde JSON), shared by the server and the node. No I/O.
//!
//! This crate is the executable form of `docs/protocol.md`: one closed enum per direction,
//! [`ClientToServer`] and [`ServerToClient`], serialised as JSON text frames over WebSocket
//! (RFC 6455) with an internal `"type"` tag in snake_case. The message names, the file index
//! and the heartbeat come from the seed documents 001 (`webrtc_offer`, `webrtc_answer`,
//! `webrtc_ice_candidate`), 003 (file index, categories, "index changed" notices) and 004
//! (anonymous node ids, search, heartbeat, status monitoring).
//!
//! Participants: a *node* (the desktop app or the `shoal` CLI) and the *signaling server*
//! (`shoal-signal`). Goals: find peers that hold a file and exchange SDP offers/answers and
//! ICE candidates with them. Non-goals: file bytes never pass through the server.

#![deny(missing_docs)]

mod ids;
mod messages;
pub mod text;

pub use ids::{ConnectionId, InfoHash, NodeId, ParseIdError};
pub use messages::{
    Category, ClientToServer, DecodeError, ErrorCode, FileAnnouncement, IceCandidateInit,
    IceServer, IndexedFile, MAX_MEMBER_NAME_BYTES, MemberPlayback, RoomBody, RoomInfo,
    ServerStatus, ServerToClient, Signal, decode_client_message,
};

/// The protocol version carried in `hello` and `welcome` (docs/protocol.md §1).
///
/// A server answers a `hello` with any other version with an `unsupported_version` error and
/// closes the connection.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message a client may send, in bytes (64 KiB). Larger ones are refused with
/// WebSocket close code 1009 (message too big).
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest WebSocket frame a client may send, in bytes (16 KiB). A longer message must be
/// fragmented into continuation frames (RFC 6455 §5.4).
pub const MAX_CLIENT_FRAME_BYTES: usize = 16 * 1024;

/// Longest file name accepted in an announcement, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 255;

/// Longest MIME type accepted in an announcement, in bytes.
pub const MAX_MIME_BYTES: usize = 127;

/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 256;

/// Deepest JSON nesting accepted in a client message, in levels (arrays and objects);
/// deeper is `malformed_json`. This is serde_json's recursion limit: it refuses the 128th
/// level.
pub const MAX_JSON_DEPTH: usize = 127;

/// Most results a `search` answers with.
pub const MAX_SEARCH_RESULTS: usize = 100;

/// Most results a `list` answers with; `total` tells how many matched.
pub const MAX_LIST_RESULTS: usize = 1000;

/// `announce` and `unannounce` messages one connection may send in a burst; past it, a
/// server refuses them with `rate_limited` (docs/protocol.md §2). Each message counts once,
/// whatever the number of files it carries.
pub const INDEX_CHANGES_BURST: u32 = 64;

/// `announce` and `unannounce` messages per second one connection may send after its burst
/// ([`INDEX_CHANGES_BURST`]).
pub const INDEX_CHANGES_PER_SEC: f64 = 8.0;

/// Most announcements a single `announce` message may carry.
///
/// With names of at most [`MAX_NAME_BYTES`], 32 announcements always fit in one
/// [`MAX_CLIENT_FRAME_BYTES`] frame, so a client never needs to fragment an announce.
pub const MAX_ANNOUNCE_BATCH: usize = 32;
