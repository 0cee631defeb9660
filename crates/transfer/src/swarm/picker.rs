//! The piece picker: which piece to ask a link for next.
//!
//! Rarest first with a per-downloader tie-break (BEP 3), then endgame: when nothing
//! unrequested is available anywhere, pieces other links are already fetching, fewest
//! requests first, so a slow or vanished peer cannot hold up the last pieces. The picker
//! knows pieces (their state, how many links have them, how many requests are out); it knows
//! nothing of links, time or the wire, so it is unit-tested on its own. The watch engine's
//! tiers (critical, read-ahead, index) are meant to sit in front of [`Picker::next`].

use std::collections::{BTreeSet, VecDeque};

use shoal_storage::Bitfield;

/// Where a piece is in its life on this side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceState {
    /// Not here; to be requested.
    Missing,
    /// Verified and handed to the driver to write ([`crate::Output::WritePiece`]).
    Writing,
    /// Written: counted in the swarm's `have` and served.
    Have,
}

/// Picker order: lower sorts first. `avail` is the number of links that have the piece, with
/// 0 stored as `u16::MAX` so unavailable pieces sort last; `order` breaks ties (see
/// [`crate::SwarmConfig::picker_seed`]).
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

/// Per-piece state, availability and requests, and the ordered set of pieces to request.
/// Empty (no pieces) until [`Picker::reset`] with the manifest's piece count.
#[derive(Debug, Default)]
pub(crate) struct Picker {
    seed: u32,
    state: Vec<PieceState>,
    /// Requests out per piece, over all links.
    requests: Vec<u8>,
    /// Links that have each piece.
    availability: Vec<u16>,
    /// Each piece's key in `wanted`, to remove it in O(log n).
    want_key: Vec<Option<WantKey>>,
    /// Missing pieces with no request out, rarest first.
    wanted: BTreeSet<WantKey>,
    /// Missing pieces with at least one request out, for endgame.
    in_flight: BTreeSet<u32>,
}

impl Picker {
    /// A picker with no pieces; `seed` orders pieces of equal rarity.
    pub(crate) fn new(seed: u32) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Starts over for `have.piece_count()` pieces: those set in `have` are had, the rest
    /// missing; no availability, no requests.
    pub(crate) fn reset(&mut self, have: &Bitfield) {
        let count = have.piece_count();
        self.state = (0..count)
            .map(|i| {
                if have.has_raw(i) {
                    PieceState::Have
                } else {
                    PieceState::Missing
                }
            })
            .collect();
        let count = count as usize;
        self.requests = vec![0; count];
        self.availability = vec![0; count];
        self.want_key = vec![None; count];
        self.wanted.clear();
        self.in_flight.clear();
        for piece in 0..count as u32 {
            self.update(piece);
        }
    }

    /// The state of `piece`; `None` past the end.
    pub(crate) fn state(&self, piece: u32) -> Option<PieceState> {
        self.state.get(piece as usize).copied()
    }

    /// Requests out for `piece` over all links (0 past the end).
    pub(crate) fn requests(&self, piece: u32) -> u8 {
        self.requests.get(piece as usize).copied().unwrap_or(0)
    }

    /// A missing piece passed verification and is being written: no longer requested.
    pub(crate) fn set_writing(&mut self, piece: u32) {
        if self.state(piece) == Some(PieceState::Missing) {
            self.state[piece as usize] = PieceState::Writing;
            self.update(piece);
        }
    }

    /// A piece being written is written. False (nothing changes) for a piece that was not
    /// being written.
    pub(crate) fn set_have(&mut self, piece: u32) -> bool {
        if self.state(piece) != Some(PieceState::Writing) {
            return false;
        }
        self.state[piece as usize] = PieceState::Have;
        self.update(piece);
        true
    }

    /// One more (`up`) or one fewer link has `piece`.
    pub(crate) fn change_availability(&mut self, piece: u32, up: bool) {
        let Some(a) = self.availability.get_mut(piece as usize) else {
            return;
        };
        *a = if up {
            a.saturating_add(1)
        } else {
            a.saturating_sub(1)
        };
        self.update(piece);
    }

    /// A request for `piece` went out on some link.
    pub(crate) fn requested(&mut self, piece: u32) {
        if let Some(r) = self.requests.get_mut(piece as usize) {
            *r = r.saturating_add(1);
            self.update(piece);
        }
    }

    /// A request for `piece` ended (answered, rejected, cancelled or its link closed).
    pub(crate) fn unrequest(&mut self, piece: u32) {
        if let Some(r) = self.requests.get_mut(piece as usize) {
            *r = r.saturating_sub(1);
            self.update(piece);
        }
    }

    /// The piece to ask a link for next: the rarest missing, unrequested piece the link has
    /// (`remote`); failing that, when no unrequested piece is available anywhere (endgame),
    /// the in-flight piece with the fewest requests that the link has, has not been asked
    /// for on it (`on_link`) and has fewer than `max_requests` requests out.
    pub(crate) fn next(
        &self,
        remote: &Bitfield,
        on_link: &VecDeque<u32>,
        max_requests: u8,
    ) -> Option<u32> {
        let normal = self
            .wanted
            .iter()
            .take_while(|k| k.avail != u16::MAX)
            .find(|k| remote.has_raw(k.piece))
            .map(|k| k.piece);
        if normal.is_some() {
            return normal;
        }
        if self.wanted.first().is_some_and(|k| k.avail != u16::MAX) {
            // Unrequested pieces are available, only not on this link: no endgame yet.
            return None;
        }
        self.in_flight
            .iter()
            .copied()
            .filter(|p| {
                remote.has_raw(*p) && !on_link.contains(p) && self.requests(*p) < max_requests
            })
            .min_by_key(|p| (self.requests(*p), *p))
    }

    /// Keeps `wanted` (missing, unrequested pieces by rarity) and `in_flight` in step with
    /// the piece's state.
    fn update(&mut self, piece: u32) {
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
                order: tie_break(piece, self.seed),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bitfield of `count` pieces with `set` set (BEP 3 order: high bit first).
    fn bitfield(count: u32, set: &[u32]) -> Bitfield {
        let mut bytes = vec![0u8; count.div_ceil(8) as usize];
        for &piece in set {
            bytes[piece as usize / 8] |= 0x80 >> (piece % 8);
        }
        Bitfield::from_bytes(&bytes, count).expect("bitfield")
    }

    /// A picker over `count` missing pieces, each held by the links listed for it.
    fn picker(seed: u32, count: u32, holders: &[(u32, u16)]) -> Picker {
        let mut p = Picker::new(seed);
        p.reset(&Bitfield::empty(count));
        for &(piece, links) in holders {
            for _ in 0..links {
                p.change_availability(piece, true);
            }
        }
        p
    }

    const NONE: &VecDeque<u32> = &VecDeque::new();

    #[test]
    fn rarest_first_then_lowest_index_with_seed_zero() {
        let p = picker(0, 4, &[(0, 3), (1, 1), (2, 2), (3, 1)]);
        let all = bitfield(4, &[0, 1, 2, 3]);
        assert_eq!(p.next(&all, NONE, 2), Some(1));
        // The link lacks piece 1 and 3: the next rarest it has.
        assert_eq!(p.next(&bitfield(4, &[0, 2]), NONE, 2), Some(2));
    }

    #[test]
    fn requested_and_had_pieces_are_not_picked_and_come_back_when_unrequested() {
        let mut p = Picker::new(0);
        p.reset(&bitfield(3, &[0]));
        for piece in 0..3 {
            p.change_availability(piece, true);
        }
        let all = bitfield(3, &[0, 1, 2]);
        assert_eq!(p.next(&all, NONE, 1), Some(1), "piece 0 is had");
        p.requested(1);
        assert_eq!(p.next(&all, NONE, 1), Some(2));
        p.unrequest(1);
        assert_eq!(p.next(&all, NONE, 1), Some(1));
    }

    #[test]
    fn a_seed_spreads_equally_rare_pieces_across_downloaders() {
        let all = bitfield(64, &(0..64).collect::<Vec<_>>());
        let holders: Vec<(u32, u16)> = (0..64).map(|p| (p, 1)).collect();
        let firsts: BTreeSet<u32> = (1..=16)
            .map(|seed| {
                picker(seed, 64, &holders)
                    .next(&all, NONE, 2)
                    .expect("a piece")
            })
            .collect();
        assert!(firsts.len() >= 12, "16 seeds chose only {firsts:?}");
    }

    #[test]
    fn endgame_asks_again_for_in_flight_pieces_fewest_requests_first() {
        let mut p = picker(0, 3, &[(0, 2), (1, 2), (2, 2)]);
        let all = bitfield(3, &[0, 1, 2]);
        for piece in 0..3 {
            p.requested(piece);
        }
        p.requested(0);
        // Nothing unrequested: endgame, piece 0 has two requests already.
        assert_eq!(p.next(&all, NONE, 2), Some(1));
        let on_link = VecDeque::from([1, 2]);
        assert_eq!(p.next(&all, &on_link, 2), None, "piece 0 is at the limit");
        assert_eq!(p.next(&all, &on_link, 3), Some(0));
    }

    #[test]
    fn no_endgame_while_unrequested_pieces_are_available_elsewhere() {
        let mut p = picker(0, 2, &[(0, 1), (1, 1)]);
        p.requested(0);
        // This link has only piece 0 (in flight); piece 1 waits for another link.
        assert_eq!(p.next(&bitfield(2, &[0]), NONE, 2), None);
    }

    #[test]
    fn unavailable_pieces_are_never_picked() {
        let p = picker(0, 2, &[(1, 1)]);
        // The link claims piece 0 but no availability was counted for it.
        assert_eq!(p.next(&bitfield(2, &[0]), NONE, 2), None);
    }

    #[test]
    fn a_piece_leaves_the_picker_when_verified_and_written() {
        let mut p = picker(0, 2, &[(0, 1), (1, 1)]);
        let all = bitfield(2, &[0, 1]);
        p.requested(0);
        p.unrequest(0);
        p.set_writing(0);
        assert_eq!(p.state(0), Some(PieceState::Writing));
        assert_eq!(p.next(&all, NONE, 2), Some(1));
        assert!(p.set_have(0));
        assert!(!p.set_have(0), "only a piece being written becomes had");
        assert_eq!(p.state(0), Some(PieceState::Have));
        assert_eq!(p.state(2), None);
    }
}
