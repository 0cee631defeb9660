//! Downloads: the manifest fetch, piece assembly and verification, requests and their
//! pipelines.

use std::collections::VecDeque;

use bytes::Bytes;
use shoal_storage::{Bitfield, MAX_PIECES, Manifest, PIECE_LEN, PieceIndex};
use tracing::{debug, trace};

use super::link::{Assembly, Link, ManifestFetch};
use super::picker::PieceState;
use super::{CloseReason, LinkId, Output, Swarm, SwarmEvent};
use crate::wire::WireMessage;

impl Swarm {
    pub(super) fn start_manifest_fetch(&mut self) {
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

    pub(super) fn on_manifest_data(
        &mut self,
        link: LinkId,
        total_len: u32,
        offset: u32,
        data: &[u8],
    ) {
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

    pub(super) fn install_manifest(&mut self, manifest: Manifest, have: Bitfield) {
        let count = manifest.layout().piece_count() as usize;
        self.manifest_bytes = Some(Bytes::from(manifest.to_bytes()));
        debug_assert_eq!(count, have.piece_count() as usize);
        self.picker.reset(&have);
        self.have = have;
        self.manifest = Some(manifest);
        // Readers set before the manifest was known get their tiers now.
        self.update_priority();
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

    pub(super) fn on_piece_chunk(&mut self, link: LinkId, piece: u32, offset: u32, data: &[u8]) {
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
            // Every piece answers one request sent on this link (a cancelled one may still
            // be answered); anything else is a lie.
            match l.asked.get_mut(&piece) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    l.asked.remove(&piece);
                }
                None => return self.punish(link, format!("sent piece {piece} not requested")),
            }
            let requested = l.requested.contains(&piece);
            let wanted = requested && self.picker.state(piece) == Some(PieceState::Missing);
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
            self.picker.unrequest(piece);
        }
        match done.buf {
            Some(buf) if self.picker.state(piece) == Some(PieceState::Missing) => {
                if manifest.verify_piece(index, &buf) {
                    trace!(%link, piece, "piece verified");
                    self.picker.set_writing(piece);
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
                    self.ban(link, CloseReason::CorruptPiece(piece));
                    return;
                }
            }
            _ => {}
        }
        // The other links to this node may have held back while it carried a critical piece.
        for sibling in self.node_links(link) {
            self.fill_requests(sibling);
        }
    }

    /// Cancels duplicate (endgame) requests for a piece that just arrived.
    pub(super) fn cancel_elsewhere(&mut self, piece: u32) {
        let holders: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.requested.contains(&piece))
            .map(|(id, _)| *id)
            .collect();
        for link in holders {
            if let Some(l) = self.links.get_mut(&link) {
                l.requested.retain(|p| *p != piece);
                self.picker.unrequest(piece);
            }
            self.send(link, WireMessage::Cancel(piece));
        }
    }

    pub(super) fn on_piece_written(&mut self, piece: PieceIndex) {
        if !self.picker.set_have(piece.get()) {
            return;
        }
        self.have.set(piece);
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

    pub(super) fn on_timeout(&mut self) {
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
        self.check_critical();
    }

    pub(super) fn fill_all(&mut self) {
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for link in ids {
            self.fill_requests(link);
        }
    }

    /// How many pieces to keep requested from a link: about
    /// [`SwarmConfig::pipeline_duration`] of its measured rate, within the configured bounds.
    pub(super) fn depth(&self, l: &Link) -> usize {
        let min = self.config.initial_pipeline_pieces.max(1);
        let max = self.config.pipeline_pieces.max(min);
        let piece_len = self
            .manifest
            .as_ref()
            .map(|m| f64::from(m.layout().piece_len()))
            .unwrap_or(1.0);
        let duration = self.config.pipeline_duration.as_secs_f64();
        let want = l.rate_bps * duration / piece_len;
        let depth = (want.ceil() as usize + 1).clamp(min, max);
        match self.download_cap {
            // The cap's share of this link, at least one piece.
            Some(cap) => {
                let links = self.links.len().max(1) as f64;
                let capped = (cap as f64 * duration / piece_len / links).ceil() as usize;
                depth.min(capped.max(1))
            }
            None => depth,
        }
    }

    pub(super) fn fill_requests(&mut self, link: LinkId) {
        if self.manifest.is_none() || self.completed {
            return;
        }
        // What this link's node was asked for on any of its links: a duplicate request
        // (endgame, overdue) to a node already asked would come over the same uplink and
        // only double what that node sends. Kept up to date below as requests go out.
        let Some(node) = self.links.get(&link).map(|l| l.node) else {
            return;
        };
        let mut on_node: VecDeque<u32> = self
            .links
            .values()
            .filter(|other| other.node == node)
            .flat_map(|other| other.requested.iter().copied())
            .collect();
        loop {
            let Some(l) = self.links.get(&link) else {
                return;
            };
            if !l.handshaken || l.requested.len() >= self.queue_cap(l) || l.backoff_until.is_some()
            {
                return;
            }
            let Some(have) = &l.remote_have else {
                return;
            };
            let piece = self.picker.next(
                have,
                &l.requested,
                &on_node,
                self.config.max_requests_per_piece,
            );
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
            on_node.push_back(piece);
            self.picker.requested(piece);
            self.note_request(link, piece);
            self.send_request(link, piece);
        }
    }
}
