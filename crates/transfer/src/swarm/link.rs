//! Links: one data channel to one peer each; opening, closing, banning, sending.

use std::collections::VecDeque;
use std::time::Instant;

use shoal_protocol::NodeId;
use shoal_storage::Bitfield;
use tracing::{debug, trace};

use super::{CloseReason, LinkId, Output, Swarm, SwarmEvent};
use crate::wire::{MIN_MESSAGE_BYTES, WIRE_VERSION, WireMessage, chunk_len};

pub(super) struct Assembly {
    pub(super) piece: u32,
    /// `None` while discarding a piece we no longer want.
    pub(super) buf: Option<Vec<u8>>,
    pub(super) filled: u32,
    pub(super) len: u32,
}

pub(super) struct Link {
    pub(super) node: NodeId,
    pub(super) chunk: usize,
    pub(super) handshaken: bool,
    pub(super) opened_at: Instant,
    pub(super) remote_have: Option<Bitfield>,
    pub(super) pending_bitfield: Option<Vec<u8>>,
    pub(super) pending_haves: Vec<u32>,
    pub(super) requested: VecDeque<u32>,
    pub(super) assembling: Option<Assembly>,
    pub(super) last_progress: Instant,
    /// When the last piece finished arriving (or requests started), for the rate estimate.
    pub(super) last_piece_at: Instant,
    /// Delivery rate estimate, bytes per second (EWMA over pieces); 0 until measured.
    pub(super) rate_bps: f64,
    pub(super) backoff_until: Option<Instant>,
    pub(super) upload_queue: VecDeque<u32>,
    pub(super) upload_inflight: usize,
    /// Requests sent on this link per piece that no piece or reject has answered yet,
    /// cancelled ones included (a cancel may cross the piece on the wire, and a piece may be
    /// cancelled and asked for again): each request is answered at most once, so a piece
    /// with no unanswered request is a lie. Bounded by the piece count.
    pub(super) asked: std::collections::HashMap<u32, u32>,
    /// We already sent the manifest on this link; a second request is a violation.
    pub(super) manifest_sent: bool,
    /// When the last message arrived.
    pub(super) last_activity: Instant,
    pub(super) bytes_down: u64,
    pub(super) bytes_up: u64,
}

pub(super) struct ManifestFetch {
    pub(super) link: LinkId,
    pub(super) buf: Vec<u8>,
    pub(super) total: Option<u32>,
    pub(super) started: Instant,
    pub(super) last_progress: Instant,
}

impl Swarm {
    pub(super) fn on_link_opened(&mut self, link: LinkId, node: NodeId, max_message_bytes: usize) {
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
                asked: std::collections::HashMap::new(),
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
    pub(super) fn drop_link(&mut self, link: LinkId, reason: Option<CloseReason>) {
        let Some(l) = self.links.remove(&link) else {
            return;
        };
        debug!(%link, peer = %l.node.short(), ?reason, "link closed");
        if let Some(reason) = reason {
            self.outputs.push_back(Output::CloseLink { link, reason });
        }
        for piece in l.requested {
            self.picker.unrequest(piece);
        }
        if let Some(have) = &l.remote_have {
            for piece in have.iter_set() {
                self.picker.change_availability(piece, false);
            }
        }
        if self.manifest_fetch.as_ref().is_some_and(|f| f.link == link) {
            self.manifest_fetch = None;
            self.start_manifest_fetch();
        }
        self.fill_all();
    }

    pub(super) fn violation(&mut self, link: LinkId, what: impl Into<String>) {
        let what = what.into();
        debug!(%link, %what, "protocol violation");
        self.drop_link(link, Some(CloseReason::ProtocolViolation(what)));
    }

    /// A lie about piece data (past the end, a wrong offset, a piece not asked for): it costs
    /// as much as a piece that fails its hash, or a peer could waste our bandwidth for free.
    pub(super) fn punish(&mut self, link: LinkId, what: impl Into<String>) {
        let what = what.into();
        debug!(%link, %what, "piece framing violation");
        self.ban(link, CloseReason::ProtocolViolation(what));
    }

    pub(super) fn ban(&mut self, link: LinkId, reason: CloseReason) {
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

    /// Sends a request for `piece` on `link`, counting it as unanswered.
    pub(super) fn send_request(&mut self, link: LinkId, piece: u32) {
        if let Some(l) = self.links.get_mut(&link) {
            *l.asked.entry(piece).or_default() += 1;
        }
        self.send(link, WireMessage::Request(piece));
    }

    pub(super) fn send(&mut self, link: LinkId, message: WireMessage<'_>) {
        if self.links.contains_key(&link) {
            trace!(%link, ?message, "send");
            self.outputs.push_back(Output::Transmit {
                link,
                message: message.encode(),
                piece_end: false,
            });
        }
    }
}
