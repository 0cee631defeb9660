//! Uploads: requests from peers, the pieces read for them, and the manifest sent on request.

use bytes::Bytes;
use shoal_storage::PieceIndex;
use tracing::debug;

use super::{Input, LinkId, Output, Swarm};
use crate::wire::{MANIFEST_REJECT_PIECE, RejectReason, WireMessage};

impl Swarm {
    pub(super) fn reject_queued_uploads(&mut self) {
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

    pub(super) fn pump_uploads(&mut self, link: LinkId) {
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

    pub(super) fn on_piece_read(&mut self, link: LinkId, piece: PieceIndex, data: Bytes) {
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

    pub(super) fn on_manifest_request(&mut self, link: LinkId) {
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
}
