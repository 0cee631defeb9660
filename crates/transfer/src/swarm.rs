//! The swarm of one content: every link to a peer that serves or wants it, the piece picker,
//! the request pipelines, verification and uploads. Sans-IO: see the crate docs.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_protocol::{InfoHash, NodeId};
use shoal_storage::{Bitfield, MAX_PIECES, Manifest, PIECE_LEN, PieceIndex};
use tracing::{debug, trace};

use crate::wire::{
    MANIFEST_REJECT_PIECE, MIN_MESSAGE_BYTES, RejectReason, WIRE_VERSION, WireMessage, chunk_len,
};

/// Most `have` messages kept from one link before the manifest is known.
const MAX_PENDING_HAVES: usize = 65_536;

/// Cancelled pieces remembered per link (they may still arrive once). Far above what can be
/// in flight on a link ([`SwarmConfig::pipeline_pieces`]).
const MAX_REMEMBERED_CANCELS: usize = 256;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceState {
    Missing,
    Writing,
    Have,
}

/// Picker order: lower sorts first. `avail` is the number of links that have the piece, with
/// 0 stored as `u16::MAX` so unavailable pieces sort last; `order` breaks ties (see
/// [`SwarmConfig::picker_seed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct WantKey {
    avail: u16,
    order: u32,
    piece: u32,
}

/// A bijection on u32 chosen by `seed` (identity for 0): xor, then multiply by an odd
/// constant (Knuth's multiplicative hash).
fn tie_break(piece: u32, seed: u32) -> u32 {
    if seed == 0 {
        piece
    } else {
        (piece ^ seed).wrapping_mul(0x9E37_79B1)
    }
}

struct Assembly {
    piece: u32,
    /// `None` while discarding a piece we no longer want.
    buf: Option<Vec<u8>>,
    filled: u32,
    len: u32,
}

struct Link {
    node: NodeId,
    chunk: usize,
    handshaken: bool,
    opened_at: Instant,
    remote_have: Option<Bitfield>,
    pending_bitfield: Option<Vec<u8>>,
    pending_haves: Vec<u32>,
    requested: VecDeque<u32>,
    assembling: Option<Assembly>,
    last_progress: Instant,
    /// When the last piece finished arriving (or requests started), for the rate estimate.
    last_piece_at: Instant,
    /// Delivery rate estimate, bytes per second (EWMA over pieces); 0 until measured.
    rate_bps: f64,
    backoff_until: Option<Instant>,
    upload_queue: VecDeque<u32>,
    upload_inflight: usize,
    /// Pieces we cancelled on this link (endgame duplicates) that may still arrive; anything
    /// else not requested is a lie. Bounded by [`MAX_REMEMBERED_CANCELS`].
    cancelled: VecDeque<u32>,
    /// We already sent the manifest on this link; a second request is a violation.
    manifest_sent: bool,
    /// When the last message arrived.
    last_activity: Instant,
    bytes_down: u64,
    bytes_up: u64,
}

struct ManifestFetch {
    link: LinkId,
    buf: Vec<u8>,
    total: Option<u32>,
    started: Instant,
    last_progress: Instant,
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

/// The state machine of one content. See the crate docs for the driving loop.
pub struct Swarm {
    info_hash: InfoHash,
    config: SwarmConfig,
    manifest: Option<Manifest>,
    manifest_bytes: Option<Bytes>,
    have: Bitfield,
    state: Vec<PieceState>,
    requests: Vec<u8>,
    availability: Vec<u16>,
    want_key: Vec<Option<WantKey>>,
    wanted: BTreeSet<WantKey>,
    /// Pieces missing with at least one request out, for endgame.
    in_flight: BTreeSet<u32>,
    links: BTreeMap<LinkId, Link>,
    banned: HashSet<NodeId>,
    /// Nodes that refused the manifest or did not answer in time: not asked again.
    manifest_refused: HashSet<NodeId>,
    manifest_fetch: Option<ManifestFetch>,
    outputs: VecDeque<Output>,
    now: Instant,
    completed: bool,
    serving: bool,
}

impl Swarm {
    /// A download that starts from nothing but the info hash. The length comes with the
    /// manifest, which the info hash commits to: a size from the signaling index is only a
    /// claim (any holder may claim any size), so it is not taken.
    pub fn new_download(info_hash: InfoHash, config: SwarmConfig, now: Instant) -> Self {
        Self {
            info_hash,
            config,
            manifest: None,
            manifest_bytes: None,
            have: Bitfield::empty(0),
            state: Vec::new(),
            requests: Vec::new(),
            availability: Vec::new(),
            want_key: Vec::new(),
            wanted: BTreeSet::new(),
            in_flight: BTreeSet::new(),
            links: BTreeMap::new(),
            banned: HashSet::new(),
            manifest_refused: HashSet::new(),
            manifest_fetch: None,
            outputs: VecDeque::new(),
            now,
            completed: false,
            serving: true,
        }
    }

    /// A swarm that already has the manifest: a seeder (`have` full) or a resumed download.
    ///
    /// # Panics
    /// If `have` does not describe the manifest's piece count (a caller bug).
    pub fn with_manifest(
        manifest: Manifest,
        have: Bitfield,
        config: SwarmConfig,
        now: Instant,
    ) -> Self {
        assert_eq!(
            have.piece_count(),
            manifest.layout().piece_count(),
            "bitfield must match the manifest"
        );
        let mut swarm = Self::new_download(manifest.info_hash(), config, now);
        swarm.install_manifest(manifest, have);
        swarm.completed = swarm.have.is_full();
        swarm
    }

    /// The content id.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The manifest, once known.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Pieces verified and written.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Whether every piece is verified and written.
    pub fn is_complete(&self) -> bool {
        self.manifest.is_some() && self.have.is_full()
    }

    /// Links currently open.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Byte counters of a link.
    pub fn link_stats(&self, link: LinkId) -> Option<LinkStats> {
        self.links.get(&link).map(|l| LinkStats {
            node: l.node,
            bytes_down: l.bytes_down,
            bytes_up: l.bytes_up,
        })
    }

    /// Nodes banned for this content.
    pub fn is_banned(&self, node: &NodeId) -> bool {
        self.banned.contains(node)
    }

    /// Feeds one input at time `now`.
    pub fn handle_input(&mut self, input: Input<'_>, now: Instant) {
        self.now = self.now.max(now);
        match input {
            Input::LinkOpened {
                link,
                node,
                max_message_bytes,
            } => self.on_link_opened(link, node, max_message_bytes),
            Input::LinkClosed { link } => self.drop_link(link, None),
            Input::Message { link, data } => self.on_message(link, data),
            Input::PieceRead { link, piece, data } => self.on_piece_read(link, piece, data),
            Input::PieceReadFailed { link, piece } => {
                debug!(%link, %piece, "piece read failed; no longer serving");
                self.serving = false;
                if let Some(l) = self.links.get_mut(&link) {
                    l.upload_inflight = l.upload_inflight.saturating_sub(1);
                }
                self.send(
                    link,
                    WireMessage::Reject {
                        piece: piece.get(),
                        reason: RejectReason::Unavailable,
                    },
                );
                self.reject_queued_uploads();
            }
            Input::PieceSent { link } => {
                if let Some(l) = self.links.get_mut(&link) {
                    l.upload_inflight = l.upload_inflight.saturating_sub(1);
                }
                self.pump_uploads(link);
            }
            Input::PieceWritten { piece } => self.on_piece_written(piece),
            Input::Timeout => self.on_timeout(),
        }
    }

    /// The next output; `Output::Timeout` when there is nothing to do until then.
    pub fn poll_output(&mut self) -> Output {
        if let Some(out) = self.outputs.pop_front() {
            return out;
        }
        Output::Timeout(self.next_deadline())
    }

    fn next_deadline(&self) -> Instant {
        let stall = self.config.stall_timeout;
        let mut next = self.now + stall;
        for l in self.links.values() {
            if !l.handshaken {
                next = next.min(l.opened_at + stall);
            }
            if !l.requested.is_empty() {
                next = next.min(l.last_progress + stall);
            }
            if let Some(b) = l.backoff_until {
                next = next.min(b);
            }
        }
        if let Some(f) = &self.manifest_fetch {
            next = next
                .min(f.last_progress + stall)
                .min(f.started + self.config.manifest_timeout);
            if f.buf.is_empty() {
                next = next.min(f.started + self.config.manifest_answer_timeout);
            }
        }
        for l in self.links.values() {
            next = next.min(l.last_activity + self.config.idle_timeout);
        }
        next.max(self.now)
    }

    // ----- links -----

    fn on_link_opened(&mut self, link: LinkId, node: NodeId, max_message_bytes: usize) {
        if self.banned.contains(&node) {
            self.outputs.push_back(Output::CloseLink {
                link,
                reason: CloseReason::Banned,
            });
            return;
        }
        if self.links.len() >= self.config.max_links {
            self.outputs.push_back(Output::CloseLink {
                link,
                reason: CloseReason::TooManyLinks,
            });
            return;
        }
        if max_message_bytes < MIN_MESSAGE_BYTES {
            self.outputs.push_back(Output::CloseLink {
                link,
                reason: CloseReason::MessageSizeTooSmall(max_message_bytes),
            });
            return;
        }
        debug!(%link, peer = %node.short(), max_message_bytes, "link opened");
        self.links.insert(
            link,
            Link {
                node,
                chunk: chunk_len(max_message_bytes),
                handshaken: false,
                opened_at: self.now,
                remote_have: None,
                pending_bitfield: None,
                pending_haves: Vec::new(),
                requested: VecDeque::new(),
                assembling: None,
                last_progress: self.now,
                last_piece_at: self.now,
                rate_bps: 0.0,
                backoff_until: None,
                upload_queue: VecDeque::new(),
                upload_inflight: 0,
                cancelled: VecDeque::new(),
                manifest_sent: false,
                last_activity: self.now,
                bytes_down: 0,
                bytes_up: 0,
            },
        );
        self.send(
            link,
            WireMessage::Handshake {
                version: WIRE_VERSION,
                info_hash: self.info_hash,
            },
        );
        let bitfield = if self.manifest.is_some() {
            self.have.as_bytes().to_vec()
        } else {
            Vec::new()
        };
        self.send(link, WireMessage::Bitfield(&bitfield));
    }

    /// Forgets a link: its requests go back to the picker, its pieces leave availability.
    /// `reason` is `Some` when the swarm decided (emits `CloseLink`).
    fn drop_link(&mut self, link: LinkId, reason: Option<CloseReason>) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        debug!(%link, peer = %l.node.short(), ?reason, "link closed");
        if let Some(reason) = reason {
            self.outputs.push_back(Output::CloseLink { link, reason });
        }
        for piece in l.requested {
            self.unrequest(piece);
        }
        if let Some(have) = &l.remote_have {
            for piece in have.iter_set() {
                self.change_availability(piece, false);
            }
        }
        if self.manifest_fetch.as_ref().is_some_and(|f| f.link == link) {
            self.manifest_fetch = None;
            self.start_manifest_fetch();
        }
        self.fill_all();
    }

    fn violation(&mut self, link: LinkId, what: impl Into<String>) {
        let what = what.into();
        debug!(%link, %what, "protocol violation");
        self.drop_link(link, Some(CloseReason::ProtocolViolation(what)));
    }

    /// A lie about piece data (past the end, a wrong offset, a piece not asked for): it costs
    /// as much as a piece that fails its hash, or a peer could waste our bandwidth for free.
    fn punish(&mut self, link: LinkId, what: impl Into<String>) {
        let what = what.into();
        debug!(%link, %what, "piece framing violation");
        self.ban(link, CloseReason::ProtocolViolation(what));
    }

    fn ban(&mut self, link: LinkId, reason: CloseReason) {
        let Some(node) = self.links.get(&link).map(|l| l.node) else {
            return;
        };
        debug!(peer = %node.short(), %reason, "banning peer for this content");
        self.banned.insert(node);
        self.outputs
            .push_back(Output::Event(SwarmEvent::PeerBanned {
                node,
                reason: reason.clone(),
            }));
        let same_node: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.node == node)
            .map(|(id, _)| *id)
            .collect();
        for other in same_node {
            let r = if other == link {
                reason.clone()
            } else {
                CloseReason::Banned
            };
            self.drop_link(other, Some(r));
        }
    }

    fn send(&mut self, link: LinkId, message: WireMessage<'_>) {
        if self.links.contains_key(&link) {
            trace!(%link, ?message, "send");
            self.outputs.push_back(Output::Transmit {
                link,
                message: message.encode(),
                piece_end: false,
            });
        }
    }

    // ----- messages -----

    fn on_message(&mut self, link: LinkId, data: &[u8]) {
        let now = self.now;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.last_activity = now;
        let message = match WireMessage::decode(data) {
            Ok(m) => m,
            Err(e) => return self.violation(link, e.to_string()),
        };
        if !l.handshaken && !matches!(message, WireMessage::Handshake { .. }) {
            return self.violation(link, "message before handshake");
        }
        match message {
            WireMessage::Handshake { version, info_hash } => {
                if l.handshaken {
                    return self.violation(link, "second handshake");
                }
                if version != WIRE_VERSION {
                    return self.drop_link(
                        link,
                        Some(CloseReason::HandshakeMismatch(format!(
                            "peer wire version {version}, we speak {WIRE_VERSION}"
                        ))),
                    );
                }
                if info_hash != self.info_hash {
                    return self.drop_link(
                        link,
                        Some(CloseReason::HandshakeMismatch(format!(
                            "peer is about {}",
                            info_hash.short()
                        ))),
                    );
                }
                if let Some(l) = self.links.get_mut(&link) {
                    l.handshaken = true;
                }
                self.start_manifest_fetch();
                self.fill_requests(link);
            }
            WireMessage::Bitfield(bytes) => self.on_bitfield(link, bytes),
            WireMessage::Have(piece) => self.on_have(link, piece),
            WireMessage::Request(piece) => self.on_request(link, piece),
            WireMessage::Piece {
                piece,
                offset,
                data,
            } => self.on_piece_chunk(link, piece, offset, data),
            WireMessage::Cancel(piece) => {
                if let Some(l) = self.links.get_mut(&link) {
                    l.upload_queue.retain(|p| *p != piece);
                }
            }
            WireMessage::Reject { piece, reason } => self.on_reject(link, piece, reason),
            WireMessage::ManifestRequest => self.on_manifest_request(link),
            WireMessage::ManifestData {
                total_len,
                offset,
                data,
            } => self.on_manifest_data(link, total_len, offset, data),
        }
    }

    fn on_bitfield(&mut self, link: LinkId, bytes: &[u8]) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.remote_have.is_some() || l.pending_bitfield.is_some() {
            return self.violation(link, "second bitfield");
        }
        let Some(manifest) = &self.manifest else {
            if bytes.len() > (MAX_PIECES as usize).div_ceil(8) {
                return self.violation(link, "bitfield too long");
            }
            l.pending_bitfield = Some(bytes.to_vec());
            return;
        };
        let count = manifest.layout().piece_count();
        let parsed = if bytes.is_empty() {
            Ok(Bitfield::empty(count))
        } else {
            Bitfield::from_bytes(bytes, count)
        };
        match parsed {
            Ok(field) => {
                for piece in field.iter_set() {
                    self.change_availability(piece, true);
                }
                if let Some(l) = self.links.get_mut(&link) {
                    l.remote_have = Some(field);
                }
                self.fill_requests(link);
            }
            Err(e) => self.violation(link, e.to_string()),
        }
    }

    fn on_have(&mut self, link: LinkId, piece: u32) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(manifest) = &self.manifest else {
            if l.pending_haves.len() >= MAX_PENDING_HAVES {
                return self.violation(link, "too many have messages");
            }
            l.pending_haves.push(piece);
            return;
        };
        if manifest.layout().piece_index(piece).is_none() {
            return self.violation(link, format!("have for piece {piece} out of range"));
        }
        let count = manifest.layout().piece_count();
        let field = l.remote_have.get_or_insert_with(|| Bitfield::empty(count));
        if let Some(p) = manifest.layout().piece_index(piece)
            && field.set(p)
        {
            self.change_availability(piece, true);
            self.fill_requests(link);
        }
    }

    fn on_request(&mut self, link: LinkId, piece: u32) {
        let reject = |reason| WireMessage::Reject { piece, reason };
        let Some(manifest) = &self.manifest else {
            return self.send(link, reject(RejectReason::NoManifest));
        };
        let Some(index) = manifest.layout().piece_index(piece) else {
            return self.violation(link, format!("request for piece {piece} out of range"));
        };
        if !self.serving {
            return self.send(link, reject(RejectReason::Unavailable));
        }
        if !self.have.has(index) {
            return self.send(link, reject(RejectReason::NotHave));
        }
        let max = self.config.max_queued_requests;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.upload_queue.len() >= max {
            return self.send(link, reject(RejectReason::Busy));
        }
        l.upload_queue.push_back(piece);
        self.pump_uploads(link);
    }

    fn on_reject(&mut self, link: LinkId, piece: u32, reason: RejectReason) {
        if piece == MANIFEST_REJECT_PIECE {
            if let Some(node) = self.links.get(&link).map(|l| l.node) {
                self.manifest_refused.insert(node);
            }
            if self.manifest_fetch.as_ref().is_some_and(|f| f.link == link) {
                self.manifest_fetch = None;
                self.start_manifest_fetch();
            }
            return;
        }
        let backoff = self.now + self.config.busy_backoff;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(pos) = l.requested.iter().position(|p| *p == piece) else {
            return;
        };
        l.requested.remove(pos);
        match reason {
            RejectReason::Busy => l.backoff_until = Some(backoff),
            _ => {
                // The peer cannot serve it: forget that it has it.
                if let Some(have) = &mut l.remote_have
                    && have.clear_raw(piece)
                {
                    self.change_availability(piece, false);
                }
            }
        }
        self.unrequest(piece);
        self.fill_all();
    }

    // ----- uploads -----

    fn reject_queued_uploads(&mut self) {
        let queued: Vec<(LinkId, u32)> = self
            .links
            .iter_mut()
            .flat_map(|(id, l)| l.upload_queue.drain(..).map(move |p| (*id, p)))
            .collect();
        for (link, piece) in queued {
            self.send(
                link,
                WireMessage::Reject {
                    piece,
                    reason: RejectReason::Unavailable,
                },
            );
        }
    }

    fn pump_uploads(&mut self, link: LinkId) {
        let slots = self.config.upload_slots;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        while l.upload_inflight < slots {
            let Some(piece) = l.upload_queue.pop_front() else {
                break;
            };
            let Some(index) = self
                .manifest
                .as_ref()
                .and_then(|m| m.layout().piece_index(piece))
            else {
                continue;
            };
            l.upload_inflight += 1;
            self.outputs
                .push_back(Output::ReadPiece { link, piece: index });
        }
    }

    fn on_piece_read(&mut self, link: LinkId, piece: PieceIndex, data: Bytes) {
        let Some(manifest) = &self.manifest else {
            return;
        };
        // The driver's reader checked the bytes against the manifest (shoal-storage does);
        // only the length is checked here, since chunking depends on it.
        if data.len() != manifest.layout().piece_size(piece) as usize {
            debug!(%piece, "read returned the wrong length; no longer serving");
            return self.handle_input(Input::PieceReadFailed { link, piece }, self.now);
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let chunk = l.chunk;
        l.bytes_up += data.len() as u64;
        let mut offset = 0usize;
        while offset < data.len() {
            let end = (offset + chunk).min(data.len());
            let message = WireMessage::Piece {
                piece: piece.get(),
                offset: offset as u32,
                data: &data[offset..end],
            }
            .encode();
            self.outputs.push_back(Output::Transmit {
                link,
                message,
                piece_end: end == data.len(),
            });
            offset = end;
        }
    }

    fn on_manifest_request(&mut self, link: LinkId) {
        // Once per link: each answer is the whole manifest, so repeated requests would make
        // us queue copies without bound.
        match self.links.get_mut(&link) {
            Some(l) if l.manifest_sent => {
                return self.violation(link, "manifest requested twice");
            }
            Some(l) => l.manifest_sent = true,
            None => return,
        }
        let Some(bytes) = self.manifest_bytes.clone() else {
            return self.send(
                link,
                WireMessage::Reject {
                    piece: MANIFEST_REJECT_PIECE,
                    reason: RejectReason::NoManifest,
                },
            );
        };
        let Some(chunk) = self.links.get(&link).map(|l| l.chunk) else {
            return;
        };
        let total = bytes.len() as u32;
        let mut offset = 0usize;
        while offset < bytes.len() {
            let end = (offset + chunk).min(bytes.len());
            self.send(
                link,
                WireMessage::ManifestData {
                    total_len: total,
                    offset: offset as u32,
                    data: &bytes[offset..end],
                },
            );
            offset = end;
        }
    }

    // ----- downloads -----

    fn start_manifest_fetch(&mut self) {
        if self.manifest.is_some() || self.manifest_fetch.is_some() {
            return;
        }
        let refused = &self.manifest_refused;
        let Some(link) = self
            .links
            .iter()
            .find(|(_, l)| l.handshaken && !refused.contains(&l.node))
            .map(|(id, _)| *id)
        else {
            return;
        };
        debug!(%link, "fetching the manifest");
        self.manifest_fetch = Some(ManifestFetch {
            link,
            buf: Vec::new(),
            total: None,
            started: self.now,
            last_progress: self.now,
        });
        self.send(link, WireMessage::ManifestRequest);
    }

    fn on_manifest_data(&mut self, link: LinkId, total_len: u32, offset: u32, data: &[u8]) {
        let Some(fetch) = self.manifest_fetch.as_mut().filter(|f| f.link == link) else {
            // Not asked for (or no longer): ignore.
            return;
        };
        let max = shoal_storage::MANIFEST_HEADER_BYTES + MAX_PIECES as usize * 32;
        let expected_total = *fetch.total.get_or_insert(total_len);
        if total_len != expected_total || total_len as usize > max {
            return self.ban(link, CloseReason::CorruptManifest);
        }
        if data.is_empty()
            || offset as usize != fetch.buf.len()
            || fetch.buf.len() + data.len() > total_len as usize
        {
            return self.violation(link, "manifest chunk empty, out of order or too long");
        }
        if fetch.buf.is_empty() {
            fetch.buf.reserve_exact(total_len as usize);
        }
        fetch.buf.extend_from_slice(data);
        fetch.last_progress = self.now;
        if fetch.buf.len() < total_len as usize {
            return;
        }
        let Some(fetch) = self.manifest_fetch.take() else {
            return;
        };
        match Manifest::from_bytes_verified(&fetch.buf, self.info_hash) {
            Ok(manifest) => {
                // Pieces must be the standard 256 KiB (a huge piece length would make every
                // piece buffer enormous).
                if manifest.layout().piece_len() != PIECE_LEN {
                    self.ban(link, CloseReason::CorruptManifest);
                    self.start_manifest_fetch();
                    return;
                }
                debug!(
                    pieces = manifest.layout().piece_count(),
                    "manifest verified"
                );
                let have = Bitfield::empty(manifest.layout().piece_count());
                self.outputs
                    .push_back(Output::Event(SwarmEvent::ManifestReady(manifest.clone())));
                self.install_manifest(manifest, have);
                if self.have.is_full() {
                    self.completed = true;
                    self.outputs.push_back(Output::Event(SwarmEvent::Completed));
                }
                self.fill_all();
            }
            Err(e) => {
                debug!(error = %e, "manifest rejected");
                self.ban(link, CloseReason::CorruptManifest);
                self.start_manifest_fetch();
            }
        }
    }

    fn install_manifest(&mut self, manifest: Manifest, have: Bitfield) {
        let count = manifest.layout().piece_count() as usize;
        self.manifest_bytes = Some(Bytes::from(manifest.to_bytes()));
        self.state = (0..count as u32)
            .map(|i| {
                if have.has_raw(i) {
                    PieceState::Have
                } else {
                    PieceState::Missing
                }
            })
            .collect();
        self.requests = vec![0; count];
        self.availability = vec![0; count];
        self.want_key = vec![None; count];
        self.wanted.clear();
        self.have = have;
        self.manifest = Some(manifest);
        for piece in 0..count as u32 {
            self.update_wanted(piece);
        }
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for link in ids {
            let Some(l) = self.links.get_mut(&link) else {
                continue;
            };
            let bitfield = l.pending_bitfield.take();
            let haves = std::mem::take(&mut l.pending_haves);
            if let Some(bytes) = bitfield {
                self.on_bitfield(link, &bytes);
            }
            for piece in haves {
                self.on_have(link, piece);
            }
        }
    }

    fn on_piece_chunk(&mut self, link: LinkId, piece: u32, offset: u32, data: &[u8]) {
        let Some(manifest) = &self.manifest else {
            return self.punish(link, "piece data before the manifest (not requested)");
        };
        let Some(index) = manifest.layout().piece_index(piece) else {
            return self.punish(link, format!("piece {piece} out of range"));
        };
        let size = manifest.layout().piece_size(index);
        let now = self.now;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.assembling.is_none() {
            if offset != 0 {
                return self.punish(
                    link,
                    format!("piece {piece} data starts at offset {offset}, not 0"),
                );
            }
            let requested = l.requested.contains(&piece);
            if !requested {
                // A piece we cancelled may still come (once); anything else is a lie.
                match l.cancelled.iter().position(|p| *p == piece) {
                    Some(pos) => {
                        l.cancelled.remove(pos);
                    }
                    None => {
                        return self.punish(link, format!("sent piece {piece} not requested"));
                    }
                }
            }
            let wanted = requested && self.state[index.as_usize()] == PieceState::Missing;
            l.assembling = Some(Assembly {
                piece,
                buf: wanted.then(|| Vec::with_capacity(size as usize)),
                filled: 0,
                len: size,
            });
        }
        let Some(a) = l.assembling.as_mut() else {
            return;
        };
        if a.piece != piece || a.filled != offset {
            let what = format!(
                "piece {piece} offset {offset} interleaved or out of order (expected piece {} offset {})",
                a.piece, a.filled
            );
            return self.punish(link, what);
        }
        if data.is_empty() || data.len() as u64 > u64::from(a.len - a.filled) {
            return self.punish(
                link,
                format!("piece {piece} data runs past the piece's end"),
            );
        }
        if let Some(buf) = &mut a.buf {
            buf.extend_from_slice(data);
        }
        a.filled += data.len() as u32;
        l.bytes_down += data.len() as u64;
        l.last_progress = now;
        if a.filled < a.len {
            return;
        }
        let Some(done) = l.assembling.take() else {
            return;
        };
        let elapsed = now.saturating_duration_since(l.last_piece_at).as_secs_f64();
        if elapsed > 0.0 {
            let sample = f64::from(done.len) / elapsed;
            l.rate_bps = if l.rate_bps == 0.0 {
                sample
            } else {
                0.7 * l.rate_bps + 0.3 * sample
            };
        }
        l.last_piece_at = now;
        let node = l.node;
        if let Some(pos) = l.requested.iter().position(|p| *p == piece) {
            l.requested.remove(pos);
            self.requests[piece as usize] = self.requests[piece as usize].saturating_sub(1);
        }
        match done.buf {
            Some(buf) if self.state[piece as usize] == PieceState::Missing => {
                if manifest.verify_piece(index, &buf) {
                    trace!(%link, piece, "piece verified");
                    self.state[piece as usize] = PieceState::Writing;
                    self.update_wanted(piece);
                    self.outputs.push_back(Output::Event(SwarmEvent::Verified {
                        piece: index,
                        from: node,
                    }));
                    self.outputs.push_back(Output::WritePiece {
                        piece: index,
                        data: Bytes::from(buf),
                    });
                    self.cancel_elsewhere(piece);
                } else {
                    self.update_wanted(piece);
                    self.ban(link, CloseReason::CorruptPiece(piece));
                    return;
                }
            }
            _ => self.update_wanted(piece),
        }
        self.fill_requests(link);
    }

    /// Cancels duplicate (endgame) requests for a piece that just arrived.
    fn cancel_elsewhere(&mut self, piece: u32) {
        let holders: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.requested.contains(&piece))
            .map(|(id, _)| *id)
            .collect();
        for link in holders {
            if let Some(l) = self.links.get_mut(&link) {
                l.requested.retain(|p| *p != piece);
                if l.cancelled.len() >= MAX_REMEMBERED_CANCELS {
                    l.cancelled.pop_front();
                }
                l.cancelled.push_back(piece);
                self.requests[piece as usize] = self.requests[piece as usize].saturating_sub(1);
            }
            self.send(link, WireMessage::Cancel(piece));
        }
        self.update_wanted(piece);
    }

    fn on_piece_written(&mut self, piece: PieceIndex) {
        let i = piece.as_usize();
        if self.state.get(i) != Some(&PieceState::Writing) {
            return;
        }
        self.state[i] = PieceState::Have;
        self.have.set(piece);
        self.update_wanted(piece.get());
        // Every link, handshake or not: our bitfield went out when the link opened, so a
        // piece written since must be announced (the ordered channel keeps it after both).
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.send(link, WireMessage::Have(piece.get()));
        }
        if self.have.is_full() && !self.completed {
            self.completed = true;
            debug!("all pieces verified and written");
            self.outputs.push_back(Output::Event(SwarmEvent::Completed));
        }
    }

    fn on_timeout(&mut self) {
        let stall = self.config.stall_timeout;
        let now = self.now;
        let stalled: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| {
                (!l.handshaken && now >= l.opened_at + stall)
                    || (!l.requested.is_empty() && now >= l.last_progress + stall)
            })
            .map(|(id, _)| *id)
            .collect();
        for link in stalled {
            self.drop_link(link, Some(CloseReason::Stalled));
        }
        if let Some(f) = &self.manifest_fetch
            && (now >= f.last_progress + stall
                || now >= f.started + self.config.manifest_timeout
                || (f.buf.is_empty() && now >= f.started + self.config.manifest_answer_timeout))
        {
            // Not this node again: its other links would stall the same way.
            let link = f.link;
            if let Some(node) = self.links.get(&link).map(|l| l.node) {
                self.manifest_refused.insert(node);
            }
            self.drop_link(link, Some(CloseReason::Stalled));
        }
        let idle = self.config.idle_timeout;
        let idle_links: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| {
                now >= l.last_activity + idle
                    && l.requested.is_empty()
                    && l.upload_queue.is_empty()
                    && l.upload_inflight == 0
            })
            .map(|(id, _)| *id)
            .collect();
        for link in idle_links {
            self.drop_link(link, Some(CloseReason::Idle));
        }
        let mut expired = false;
        for l in self.links.values_mut() {
            if l.backoff_until.is_some_and(|b| now >= b) {
                l.backoff_until = None;
                expired = true;
            }
        }
        if expired {
            self.fill_all();
        }
    }

    // ----- picker -----

    fn change_availability(&mut self, piece: u32, up: bool) {
        let Some(a) = self.availability.get_mut(piece as usize) else {
            return;
        };
        *a = if up {
            a.saturating_add(1)
        } else {
            a.saturating_sub(1)
        };
        self.update_wanted(piece);
    }

    /// Keeps `wanted` (missing, unrequested pieces by rarity) and `in_flight` in step with
    /// the piece's state.
    fn update_wanted(&mut self, piece: u32) {
        let i = piece as usize;
        if i >= self.state.len() {
            return;
        }
        if let Some(old) = self.want_key[i].take() {
            self.wanted.remove(&old);
        }
        let missing = self.state[i] == PieceState::Missing;
        if missing && self.requests[i] == 0 {
            let avail = match self.availability[i] {
                0 => u16::MAX,
                n => n,
            };
            let key = WantKey {
                avail,
                order: tie_break(piece, self.config.picker_seed),
                piece,
            };
            self.wanted.insert(key);
            self.want_key[i] = Some(key);
        }
        if missing && self.requests[i] > 0 {
            self.in_flight.insert(piece);
        } else {
            self.in_flight.remove(&piece);
        }
    }

    fn unrequest(&mut self, piece: u32) {
        if let Some(r) = self.requests.get_mut(piece as usize) {
            *r = r.saturating_sub(1);
            self.update_wanted(piece);
        }
    }

    fn fill_all(&mut self) {
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for link in ids {
            self.fill_requests(link);
        }
    }

    /// How many pieces to keep requested from a link: about
    /// [`SwarmConfig::pipeline_duration`] of its measured rate, within the configured bounds.
    fn depth(&self, l: &Link) -> usize {
        let min = self.config.initial_pipeline_pieces.max(1);
        let max = self.config.pipeline_pieces.max(min);
        let piece_len = self
            .manifest
            .as_ref()
            .map(|m| f64::from(m.layout().piece_len()))
            .unwrap_or(1.0);
        let want = l.rate_bps * self.config.pipeline_duration.as_secs_f64() / piece_len;
        (want.ceil() as usize + 1).clamp(min, max)
    }

    fn fill_requests(&mut self, link: LinkId) {
        if self.manifest.is_none() || self.completed {
            return;
        }
        loop {
            let Some(l) = self.links.get(&link) else {
                return;
            };
            if !l.handshaken || l.requested.len() >= self.depth(l) || l.backoff_until.is_some() {
                return;
            }
            let Some(have) = &l.remote_have else {
                return;
            };
            let normal = self
                .wanted
                .iter()
                .take_while(|k| k.avail != u16::MAX)
                .find(|k| have.has_raw(k.piece))
                .map(|k| k.piece);
            let piece = match normal {
                Some(p) => Some(p),
                // Endgame: nothing unrequested is available anywhere, so ask for pieces other
                // links are already fetching, to finish despite a slow or vanished peer.
                None if self.wanted.first().is_none_or(|k| k.avail == u16::MAX) => self
                    .in_flight
                    .iter()
                    .copied()
                    .filter(|p| {
                        have.has_raw(*p)
                            && !l.requested.contains(p)
                            && self.requests[*p as usize] < self.config.max_requests_per_piece
                    })
                    .min_by_key(|p| (self.requests[*p as usize], *p)),
                None => None,
            };
            let Some(piece) = piece else {
                return;
            };
            let now = self.now;
            if let Some(l) = self.links.get_mut(&link) {
                if l.requested.is_empty() {
                    l.last_progress = now;
                    l.last_piece_at = now;
                }
                l.requested.push_back(piece);
            }
            self.requests[piece as usize] += 1;
            self.update_wanted(piece);
            self.send(link, WireMessage::Request(piece));
        }
    }
}
