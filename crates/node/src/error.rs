//! The node's error type. Every variant reads as a sentence a user can act on.

use shoal_protocol::{ErrorCode, InfoHash, ServerToClient};

/// What can go wrong in a [`crate::NodeHandle`] call or a transfer.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node was shut down.
    #[error("the node has stopped")]
    Stopped,
    /// Not connected to the signaling server right now.
    #[error("not connected to the signaling server {url}")]
    NotConnected {
        /// The server.
        url: String,
    },
    /// The server did not answer in time.
    #[error("the signaling server did not answer within {seconds} s")]
    Timeout {
        /// Seconds waited.
        seconds: u64,
    },
    /// The server refused a request.
    #[error("the signaling server refused: {reason} ({code:?})")]
    Server {
        /// Its code.
        code: ErrorCode,
        /// Its words.
        reason: String,
    },
    /// The server answered something else than expected (a protocol bug).
    #[error("unexpected answer from the signaling server: {0}")]
    Unexpected(String),
    /// No node on the server shares this content.
    #[error("no one on the signaling server shares {info_hash}")]
    UnknownInfoHash {
        /// The content.
        info_hash: InfoHash,
    },
    /// The content is indexed but every holder is this node, offline or banned.
    #[error("no holder of {info_hash} is online")]
    NoHolders {
        /// The content.
        info_hash: InfoHash,
    },
    /// Every holder failed (connection failures, bad data) and no other is online.
    #[error("every source of {info_hash} failed: {last_reason}")]
    SourcesFailed {
        /// The content.
        info_hash: InfoHash,
        /// The last failure, in words.
        last_reason: String,
    },
    /// This node does not share that content.
    #[error("{info_hash} is not shared by this node")]
    NotShared {
        /// The content.
        info_hash: InfoHash,
    },
    /// No transfer with that id.
    #[error("no transfer {0}")]
    UnknownTransfer(u64),
    /// That content is already being downloaded.
    #[error("{info_hash} is already being downloaded")]
    AlreadyDownloading {
        /// The content.
        info_hash: InfoHash,
    },
    /// A file could not be read, hashed or written.
    #[error(transparent)]
    Storage(#[from] shoal_storage::StorageError),
    /// The path is neither shared by this node nor one of its finished downloads.
    #[error("{} is not a shared or downloaded file", path.display())]
    NotPlayable {
        /// The path asked for.
        path: std::path::PathBuf,
    },
    /// The loopback media server could not start.
    #[error("cannot start the media server: {0}")]
    MediaServer(std::io::Error),
    /// Live mode (issue 12): this node does not host the room, or the file cannot be sent
    /// (not MP4/WebM, no H.264/VP8/VP9/Opus track).
    #[error("live stream: {0}")]
    Live(String),
}

impl NodeError {
    pub(crate) fn unexpected(message: &ServerToClient) -> Self {
        match message {
            ServerToClient::Error { code, reason, .. } => Self::Server {
                code: *code,
                reason: reason.clone(),
            },
            other => Self::Unexpected(format!("{other:?}")),
        }
    }
}
