//! Watching while downloading (issue 10): readers' playheads, the priority tiers they set in
//! the picker, and the deadlines of critical pieces.
//!
//! Tiers, most urgent first (libtorrent's time-critical pieces; WebTorrent's critical and
//! read-ahead selections):
//! - *critical*: the piece holding a playhead's offset and the next one, which a reader waits
//!   for now. Each goes to the link expected to deliver it first (its queue of critical
//!   pieces times its measured piece time); that link's queued requests for anything else
//!   (read-ahead included) after the one under way are cancelled so the critical piece is
//!   next, and so are those of the other links to the same node, which share its uplink
//!   (two peer connections per holder); they are asked again behind it. A peer serves
//!   requests in order, so without this a second reader (a player's request for an MP4's
//!   `moov` at the end) waited behind the first reader's whole pipeline. If it has not
//!   arrived after 1.5 times the link's expected time (plus 100 ms), it is overdue and asked
//!   of a second link too (another link to the same node included: the first may be
//!   stalled).
//! - *read-ahead*: the pieces after the critical ones up to `ahead_bytes` past the offset
//!   (the node sizes it as about 30 s of media), nearest first, round robin over playheads;
//! - *index*: the first and last 1 % of the file (at least one piece each): an MP4's `moov`
//!   at the end, Matroska cues, an AVI index;
//! - *rest*: rarest first with random tie-breaks ([`super::picker`]).
//!
//! A seek replaces the playheads: pieces of the old window that were not requested are
//! rest-tier pieces at once.

use std::time::{Duration, Instant};

use super::picker::PieceState;
use super::{LinkId, Playhead, Swarm};
use crate::wire::WireMessage;

/// Critical pieces per playhead: the one holding its offset and the next.
const CRITICAL_PIECES: u64 = 2;
/// Share of the file fetched early at each end for the container's index, in percent.
const INDEX_PERCENT: u64 = 1;
/// A critical piece is overdue after this many times its link's expected time...
const OVERDUE_FACTOR: f64 = 1.5;
/// ...plus this.
const OVERDUE_SLACK: Duration = Duration::from_millis(100);
/// Requests a link may queue behind its critical pieces: a short queue keeps the next
/// critical piece near the front without cancelling (a peer serves in order).
const AFTER_CRITICAL: usize = 2;
/// Piece time assumed for a link whose rate is not measured yet.
const UNMEASURED_PIECE_TIME: Duration = Duration::from_secs(1);

impl Swarm {
    /// The readers now (replacing the last set); an empty set stops the critical and
    /// read-ahead tiers (the index tier stays once a download was watched).
    pub(super) fn set_playheads(&mut self, playheads: &[Playhead]) {
        self.playheads = playheads.to_vec();
        if !playheads.is_empty() {
            self.streaming = true;
        }
        self.update_priority();
        let critical: Vec<u32> = self.picker.critical_pieces().collect();
        for piece in critical {
            if self.picker.requests(piece) == 0 {
                self.assign_critical(piece);
            } else {
                self.expedite(piece);
            }
        }
        self.fill_all();
    }

    /// A piece requested before it became critical (as read-ahead or index, or by rarity)
    /// may sit behind a long queue: the links that have it queued drop their other
    /// non-critical requests, and its deadline starts now.
    fn expedite(&mut self, piece: u32) {
        if self.picker.state(piece) != Some(PieceState::Missing) {
            return;
        }
        let holders: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.requested.iter().skip(1).any(|p| *p == piece))
            .map(|(id, _)| *id)
            .collect();
        for link in &holders {
            self.cancel_non_critical(*link);
        }
        if let Some(link) = self
            .links
            .iter()
            .find(|(_, l)| l.requested.contains(&piece))
            .map(|(id, _)| *id)
        {
            let now = self.now;
            self.critical_since.entry(piece).or_insert((link, now));
        }
    }

    /// Recomputes the picker's priority list from the playheads and the manifest.
    pub(super) fn update_priority(&mut self) {
        let Some(manifest) = &self.manifest else {
            return;
        };
        let layout = manifest.layout();
        let count = u64::from(layout.piece_count());
        let piece_len = u64::from(layout.piece_len());
        let len = layout.len_bytes();
        if count == 0 || piece_len == 0 {
            return;
        }
        let mut list: Vec<u32> = Vec::new();
        let mut windows: Vec<std::ops::Range<u64>> = Vec::new();
        for playhead in &self.playheads {
            if playhead.offset >= len {
                continue;
            }
            let first = playhead.offset / piece_len;
            let critical_end = (first + CRITICAL_PIECES).min(count);
            list.extend((first..critical_end).map(|p| p as u32));
            let ahead_end = playhead
                .offset
                .saturating_add(playhead.ahead_bytes)
                .div_ceil(piece_len)
                .min(count);
            windows.push(critical_end..ahead_end.max(critical_end));
        }
        let critical = list.len();
        let longest = windows.iter().map(|w| w.end - w.start).max().unwrap_or(0);
        for i in 0..longest {
            for w in &windows {
                if w.start + i < w.end {
                    list.push((w.start + i) as u32);
                }
            }
        }
        if self.streaming {
            let edge = (count * INDEX_PERCENT).div_ceil(100).clamp(1, count);
            list.extend((0..edge).map(|p| p as u32));
            list.extend((count - edge..count).rev().map(|p| p as u32));
        }
        self.picker.set_priority(list, critical);
        let critical: Vec<u32> = self.picker.critical_pieces().collect();
        self.critical_since.retain(|p, _| critical.contains(p));
    }

    /// Critical pieces requested on `l`.
    fn critical_on(&self, l: &super::link::Link) -> usize {
        l.requested
            .iter()
            .filter(|p| self.picker.is_critical(**p))
            .count()
    }

    /// How many requests `l` may have queued: its pipeline depth; while it carries a critical
    /// piece, that piece and [`AFTER_CRITICAL`] more; while another link to the same node
    /// carries one that is not overdue, nothing new (the links of one node share its uplink,
    /// and whatever they ask for is sent beside the critical piece and delays it). Once that
    /// piece is overdue its link may be stalled: the others take requests again, the overdue
    /// piece first.
    pub(super) fn queue_cap(&self, l: &super::link::Link) -> usize {
        let depth = self.depth(l);
        let critical = self.critical_on(l);
        if critical > 0 {
            return (critical + AFTER_CRITICAL).min(depth.max(critical + 1));
        }
        let sibling_waits = self.links.values().any(|other| {
            other.node == l.node
                && other
                    .requested
                    .iter()
                    .any(|p| self.picker.is_critical(*p) && !self.picker.is_overdue(*p))
        });
        if sibling_waits { 0 } else { depth }
    }

    /// `link` and the other links to the same node (two peer connections to one holder).
    pub(super) fn node_links(&self, link: LinkId) -> Vec<LinkId> {
        let Some(node) = self.links.get(&link).map(|l| l.node) else {
            return Vec::new();
        };
        self.links
            .iter()
            .filter(|(_, l)| l.node == node)
            .map(|(id, _)| *id)
            .collect()
    }

    /// How long `link` is expected to take per piece.
    fn piece_time(&self, link: LinkId) -> Duration {
        let piece_len = self
            .manifest
            .as_ref()
            .map_or(0.0, |m| f64::from(m.layout().piece_len()));
        match self.links.get(&link) {
            Some(l) if l.rate_bps > 0.0 => Duration::from_secs_f64(piece_len / l.rate_bps),
            _ => UNMEASURED_PIECE_TIME,
        }
    }

    /// Requests a critical piece nobody was asked for from the link expected to deliver it
    /// first, cancelling that link's queued rest-tier requests so it comes next.
    fn assign_critical(&mut self, piece: u32) {
        if self.picker.state(piece) != Some(PieceState::Missing) || self.picker.requests(piece) > 0
        {
            return;
        }
        let best = self
            .links
            .iter()
            .filter(|(_, l)| {
                l.handshaken
                    && l.backoff_until.is_none()
                    && l.remote_have.as_ref().is_some_and(|h| h.has_raw(piece))
            })
            .map(|(id, l)| {
                // Ahead of it: the piece under way, and the critical pieces queued.
                let ahead = l
                    .requested
                    .iter()
                    .enumerate()
                    .filter(|(i, p)| *i == 0 || self.picker.is_critical(**p))
                    .count();
                (self.piece_time(*id).mul_f64(ahead as f64 + 1.0), *id)
            })
            .min();
        let Some((_, link)) = best else {
            return;
        };
        self.cancel_non_critical(link);
        tracing::debug!(piece, %link, "critical piece requested");
        let now = self.now;
        if let Some(l) = self.links.get_mut(&link) {
            if l.requested.is_empty() {
                l.last_progress = now;
                l.last_piece_at = now;
            }
            l.requested.push_back(piece);
        }
        self.picker.requested(piece);
        self.critical_since.insert(piece, (link, now));
        self.send_request(link, piece);
    }

    /// Cancels the queued requests for pieces that are not critical, except the first of each
    /// link (it may be arriving), on `link` and the other links to its node (they share its
    /// uplink); they go back to the picker.
    fn cancel_non_critical(&mut self, link: LinkId) {
        for link in self.node_links(link) {
            self.cancel_non_critical_on(link);
        }
    }

    fn cancel_non_critical_on(&mut self, link: LinkId) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let drop: Vec<u32> = l
            .requested
            .iter()
            .skip(1)
            .copied()
            .filter(|p| !self.picker.is_critical(*p))
            .collect();
        if drop.is_empty() {
            return;
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.requested.retain(|p| !drop.contains(p));
        }
        tracing::debug!(%link, pieces = ?drop, "cancelled for a critical piece");
        for piece in drop {
            self.picker.unrequest(piece);
            self.send(link, WireMessage::Cancel(piece));
        }
    }

    /// Records when a critical piece was requested on `link` (for its deadline).
    pub(super) fn note_request(&mut self, link: LinkId, piece: u32) {
        if self.picker.critical_pieces().any(|p| p == piece) {
            self.critical_since.entry(piece).or_insert((link, self.now));
        }
    }

    /// When the critical piece requested on `link` at `since` becomes overdue.
    fn critical_deadline(&self, piece: u32, link: LinkId, since: Instant) -> Instant {
        let position = self
            .links
            .get(&link)
            .and_then(|l| l.requested.iter().position(|p| *p == piece))
            .unwrap_or(0);
        let expected = self.piece_time(link).mul_f64(position as f64 + 1.0);
        since + expected.mul_f64(OVERDUE_FACTOR) + OVERDUE_SLACK
    }

    /// The earliest deadline of a critical piece in flight and not yet overdue, if any.
    pub(super) fn next_critical_deadline(&self) -> Option<Instant> {
        self.critical_since
            .iter()
            .filter(|(p, _)| {
                self.picker.state(**p) == Some(PieceState::Missing) && !self.picker.is_overdue(**p)
            })
            .map(|(p, (link, since))| self.critical_deadline(*p, *link, *since))
            .min()
    }

    /// Marks critical pieces past their deadline overdue, so a second link is asked; forgets
    /// those that arrived or are no longer critical.
    pub(super) fn check_critical(&mut self) {
        let now = self.now;
        let critical: Vec<u32> = self.picker.critical_pieces().collect();
        let entries: Vec<(u32, LinkId, Instant)> = self
            .critical_since
            .iter()
            .map(|(p, (l, s))| (*p, *l, *s))
            .collect();
        let mut any = false;
        for (piece, link, since) in entries {
            let missing = self.picker.state(piece) == Some(PieceState::Missing);
            if !missing || !critical.contains(&piece) {
                self.critical_since.remove(&piece);
                continue;
            }
            if self.picker.requests(piece) == 0 {
                // Its request ended (link closed, rejected): ask anyone, from scratch.
                self.critical_since.remove(&piece);
                self.assign_critical(piece);
                any = true;
                continue;
            }
            if !self.picker.is_overdue(piece) && now >= self.critical_deadline(piece, link, since) {
                self.picker.set_overdue(piece, true);
                any = true;
            }
        }
        if any {
            self.fill_all();
        }
    }
}
