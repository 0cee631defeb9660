//! The swarm's I/O types: what goes in ([`Input`]), what comes out ([`Output`]), the
//! events and reasons it reports, and its tunables.

use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_protocol::NodeId;
use shoal_storage::{Manifest, PieceIndex};

/// Names one link (one data channel to one peer) within a swarm. Chosen by the driver; never
/// reused while the swarm lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link{}", self.0)
    }
}

/// Tunables of a swarm. The defaults suit 256 KiB pieces on links of 10-150 MiB/s.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Most pieces requested and not yet received, per link. 24 pieces = 6 MiB in flight,
    /// more than the sender's high watermark (4 MiB), so a fast sender never idles waiting for
    /// requests. A link starts at [`SwarmConfig::initial_pipeline_pieces`] and grows to about
    /// [`SwarmConfig::pipeline_duration`] of its measured rate, so slow links do not hoard
    /// pieces that fast links could fetch.
    pub pipeline_pieces: usize,
    /// Pipeline depth of a new link, before its rate is known.
    pub initial_pipeline_pieces: usize,
    /// How much time's worth of a link's rate to keep requested.
    pub pipeline_duration: Duration,
    /// Pieces handed to the driver for sending at once, per link (see [`Input::PieceSent`]).
    pub upload_slots: usize,
    /// Requests a peer may queue with us before we answer `reject busy`.
    pub max_queued_requests: usize,
    /// A link with requests outstanding that delivers nothing for this long is dropped and its
    /// requests go to other peers. Also bounds the handshake and a manifest fetch.
    pub stall_timeout: Duration,
    /// In endgame (every missing piece already requested), how many links may be asked for the
    /// same piece.
    pub max_requests_per_piece: u8,
    /// How long a link that answered `reject busy` is left alone.
    pub busy_backoff: Duration,
    /// Most links a swarm keeps; more are closed at once.
    pub max_links: usize,
    /// A link over which nothing arrives for this long, while neither side waits for the
    /// other, is closed.
    pub idle_timeout: Duration,
    /// Longest a manifest fetch from one peer may take before another peer is asked.
    pub manifest_timeout: Duration,
    /// Longest a peer may take to send the first bytes of the manifest; then its node is not
    /// asked again and another node is (a holder that never answers costs this, once).
    pub manifest_answer_timeout: Duration,
    /// Tie-break among pieces of equal rarity. 0 picks the lowest index first (a lone
    /// downloader streams in order); any other value picks in a pseudo-random order unique to
    /// this seed, so downloaders of a swarm fetch different pieces and can trade them (BEP 3's
    /// rarest-first with random tie-breaks). Drivers pass a random value.
    pub picker_seed: u32,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            pipeline_pieces: 24,
            initial_pipeline_pieces: 4,
            pipeline_duration: Duration::from_secs(1),
            upload_slots: 2,
            max_queued_requests: 64,
            stall_timeout: Duration::from_secs(15),
            max_requests_per_piece: 2,
            busy_backoff: Duration::from_millis(500),
            picker_seed: 0,
            max_links: 64,
            idle_timeout: Duration::from_secs(300),
            manifest_timeout: Duration::from_secs(60),
            manifest_answer_timeout: Duration::from_secs(5),
        }
    }
}

/// What goes into the swarm.
#[derive(Debug)]
pub enum Input<'a> {
    /// A data channel for this content opened.
    LinkOpened {
        /// Its id.
        link: LinkId,
        /// The remote node (for bans: a node that sends a bad piece is banned for this content).
        node: NodeId,
        /// The negotiated max message size in bytes (RFC 8841).
        max_message_bytes: usize,
    },
    /// The data channel closed or the peer vanished. The swarm emits no `CloseLink` for it.
    LinkClosed {
        /// Its id.
        link: LinkId,
    },
    /// One message arrived on a link.
    Message {
        /// The link.
        link: LinkId,
        /// The message bytes.
        data: &'a [u8],
    },
    /// The bytes of a piece asked for with [`Output::ReadPiece`].
    PieceRead {
        /// The link it is for.
        link: LinkId,
        /// The piece.
        piece: PieceIndex,
        /// Its bytes, already checked against the manifest: `shoal-storage`'s
        /// `SourceFile::read_piece` and `PartFile::read_piece` hash what they read, so a
        /// changed file is never served. The swarm checks only the length.
        data: Bytes,
    },
    /// A piece asked for with [`Output::ReadPiece`] could not be read, or did not match its
    /// hash (the file changed).
    /// The swarm stops serving.
    PieceReadFailed {
        /// The link it was for.
        link: LinkId,
        /// The piece.
        piece: PieceIndex,
    },
    /// The driver handed every message of one piece (up to the one marked `piece_end`) to the
    /// link and is below its low watermark: one upload slot is free again.
    PieceSent {
        /// The link.
        link: LinkId,
    },
    /// A verified piece from [`Output::WritePiece`] is on disk.
    PieceWritten {
        /// The piece.
        piece: PieceIndex,
    },
    /// The time given by [`Output::Timeout`] has come.
    Timeout,
    /// The readers of the file being downloaded now (players streaming it), replacing the
    /// last set; empty when nobody reads. Their positions set the picker's critical and
    /// read-ahead tiers, and from the first one on the first and last 1 % of the file come
    /// before the rest (issue 10).
    Playheads(&'a [Playhead]),
}

/// One reader of a download (a player streaming it, issue 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Playhead {
    /// The next byte the reader needs, from the start of the file.
    pub offset: u64,
    /// Bytes after `offset` to fetch before the rest: the read-ahead window (the node makes
    /// it about 30 s of media).
    pub ahead_bytes: u64,
}

/// What comes out of the swarm, drained with [`Swarm::poll_output`] until `Timeout`.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send one message on a link.
    Transmit {
        /// The link.
        link: LinkId,
        /// The message (at most the link's max message size).
        message: Bytes,
        /// Last message of an uploaded piece: answer with [`Input::PieceSent`] once it is
        /// handed to the channel.
        piece_end: bool,
    },
    /// Read a piece from disk and give it back with [`Input::PieceRead`].
    ReadPiece {
        /// The link that asked.
        link: LinkId,
        /// The piece.
        piece: PieceIndex,
    },
    /// A piece passed verification: write it, then answer [`Input::PieceWritten`].
    WritePiece {
        /// The piece.
        piece: PieceIndex,
        /// Exactly the piece's bytes.
        data: Bytes,
    },
    /// Close this link; the swarm has already forgotten it.
    CloseLink {
        /// The link.
        link: LinkId,
        /// Why.
        reason: CloseReason,
    },
    /// Something the driver or the user should know.
    Event(SwarmEvent),
    /// Nothing more until this time (or the next input).
    Timeout(Instant),
}

/// Why the swarm closed a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent a piece that failed its SHA-256; its node is banned for this content.
    CorruptPiece(u32),
    /// The peer sent a manifest that does not hash to the info hash; banned.
    CorruptManifest,
    /// The node is banned for this content.
    Banned,
    /// The peer broke the peer wire protocol.
    ProtocolViolation(String),
    /// The handshake named other content or another wire version.
    HandshakeMismatch(String),
    /// Requests went unanswered for [`SwarmConfig::stall_timeout`].
    Stalled,
    /// The negotiated max message size is too small to carry the protocol.
    MessageSizeTooSmall(usize),
    /// The swarm has [`SwarmConfig::max_links`] links already.
    TooManyLinks,
    /// Nothing was exchanged for [`SwarmConfig::idle_timeout`].
    Idle,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CorruptPiece(p) => write!(f, "sent piece {p} that failed verification"),
            Self::CorruptManifest => write!(f, "sent a manifest that does not match the info hash"),
            Self::Banned => write!(f, "banned for this content"),
            Self::ProtocolViolation(what) => write!(f, "protocol violation: {what}"),
            Self::HandshakeMismatch(what) => write!(f, "handshake mismatch: {what}"),
            Self::Stalled => write!(f, "stalled: requests went unanswered"),
            Self::MessageSizeTooSmall(n) => write!(f, "max message size {n} bytes is too small"),
            Self::TooManyLinks => write!(f, "too many links"),
            Self::Idle => write!(f, "idle"),
        }
    }
}

/// Notable changes.
#[derive(Debug, Clone)]
pub enum SwarmEvent {
    /// The manifest was fetched and verified against the info hash; pieces can be stored now.
    ManifestReady(Manifest),
    /// A piece arrived and matched its hash.
    Verified {
        /// The piece.
        piece: PieceIndex,
        /// Who sent it.
        from: NodeId,
    },
    /// A node sent bad data and is banned for this content.
    PeerBanned {
        /// The node.
        node: NodeId,
        /// What it did.
        reason: CloseReason,
    },
    /// Every piece is verified and written.
    Completed,
}

/// Per-link byte counters, for rates and per-peer contributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkStats {
    /// The remote node.
    pub node: NodeId,
    /// Piece bytes received on this link.
    pub bytes_down: u64,
    /// Piece bytes sent on this link.
    pub bytes_up: u64,
}
