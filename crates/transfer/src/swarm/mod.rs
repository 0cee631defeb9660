//! The swarm of one content: every link to a peer that serves or wants it, the piece picker,
//! the request pipelines, verification and uploads. Sans-IO: see the crate docs.
//!
//! Modules follow the seams: `io` (what goes in and out), `link` (links and their life),
//! `upload` (serving), `download` (manifest fetch, assembly, verification, requests) and
//! `picker` (which piece next, with its own state and unit tests).

mod download;
mod io;
mod link;
mod picker;
mod stream;
mod upload;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use shoal_protocol::{InfoHash, NodeId};
use shoal_storage::{Bitfield, MAX_PIECES, Manifest};
use tracing::debug;

pub use io::{CloseReason, Input, LinkId, LinkStats, Output, Playhead, SwarmConfig, SwarmEvent};
use link::{Link, ManifestFetch};
use picker::Picker;

use crate::wire::{MANIFEST_REJECT_PIECE, RejectReason, WIRE_VERSION, WireMessage};

/// Most `have` messages kept from one link before the manifest is known.
const MAX_PENDING_HAVES: usize = 65_536;

/// The state machine of one content. See the crate docs for the driving loop.
pub struct Swarm {
    info_hash: InfoHash,
    config: SwarmConfig,
    /// [`Swarm::set_download_cap`].
    download_cap: Option<u64>,
    manifest: Option<Manifest>,
    manifest_bytes: Option<Bytes>,
    have: Bitfield,
    /// Piece states, availability and requests; which piece next.
    picker: Picker,
    links: BTreeMap<LinkId, Link>,
    banned: HashSet<NodeId>,
    /// Nodes that refused the manifest or did not answer in time: not asked again.
    manifest_refused: HashSet<NodeId>,
    manifest_fetch: Option<ManifestFetch>,
    outputs: VecDeque<Output>,
    now: Instant,
    completed: bool,
    serving: bool,
    /// Readers of the file being downloaded (issue 10).
    playheads: Vec<Playhead>,
    /// A reader was ever set: the index tier stays on.
    streaming: bool,
    /// Critical pieces in flight: the link first asked and when (for their deadline).
    critical_since: HashMap<u32, (LinkId, Instant)>,
}

impl Swarm {
    /// A download that starts from nothing but the info hash. The length comes with the
    /// manifest, which the info hash commits to: a size from the signaling index is only a
    /// claim (any holder may claim any size), so it is not taken.
    pub fn new_download(info_hash: InfoHash, config: SwarmConfig, now: Instant) -> Self {
        Self {
            info_hash,
            picker: Picker::new(config.picker_seed),
            config,
            download_cap: None,
            manifest: None,
            manifest_bytes: None,
            have: Bitfield::empty(0),
            links: BTreeMap::new(),
            banned: HashSet::new(),
            manifest_refused: HashSet::new(),
            manifest_fetch: None,
            outputs: VecDeque::new(),
            now,
            completed: false,
            serving: true,
            playheads: Vec::new(),
            streaming: false,
            critical_since: HashMap::new(),
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

    /// Pieces on their way: requested from a link, or verified and being written. Ascending,
    /// each once; empty before the manifest. For a player's piece map (issue 10, item 4).
    pub fn in_flight(&self) -> Vec<u32> {
        self.picker.in_flight()
    }

    /// The node's download cap, bytes per second (`None`: none). A link's pipeline holds at
    /// most [`SwarmConfig::pipeline_duration`] of it, shared by the open links (at least one
    /// piece each): a cap that delays *reads* lets pieces requested beyond it wait in the
    /// receive queues, ahead of a critical piece requested later (a room member capped
    /// below the video's bitrate waited minutes after a seek).
    pub fn set_download_cap(&mut self, bytes_per_sec: Option<u64>) {
        self.download_cap = bytes_per_sec;
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
            Input::Playheads(playheads) => self.set_playheads(playheads),
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
        if let Some(critical) = self.next_critical_deadline() {
            next = next.min(critical);
        }
        next.max(self.now)
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
                    self.picker.change_availability(piece, true);
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
            self.picker.change_availability(piece, true);
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
        // A reject answers one request, like a piece.
        match l.asked.get_mut(&piece) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                l.asked.remove(&piece);
            }
            None => return,
        }
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
                    self.picker.change_availability(piece, false);
                }
            }
        }
        self.picker.unrequest(piece);
        self.fill_all();
    }
}
