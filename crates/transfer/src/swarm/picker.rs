//! The piece picker: which piece to ask a link for next.
//!
//! Rarest first with a per-downloader tie-break (BEP 3), then endgame: when nothing
//! unrequested is available anywhere, pieces other links are already fetching, fewest
//! requests first, so a slow or vanished peer cannot hold up the last pieces. The picker
//! knows pieces (their state, how many links have them, how many requests are out); it knows
//! nothing of links, time or the wire, so it is unit-tested on its own.
//!
//! In front of rarest-first sits the *priority list* a watched download sets
//! ([`Picker::set_priority`], issue 10): critical pieces (a reader waits for them now), then
//! the read-ahead window, then the index pieces at both ends of the file, in that order. Its
//! pieces are picked in list order; a critical piece that is overdue on its link
//! ([`Picker::set_overdue`]) may be asked of a second link (libtorrent's time-critical
//! pieces). A piece that leaves the list (a seek) is an ordinary rest-tier piece again at once.

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
    /// Pieces to fetch before the rest, most urgent first.
    priority: Vec<u32>,
    /// How many of `priority` (its first ones) are critical.
    critical: usize,
    /// Critical pieces whose request is overdue: a second link may be asked.
    overdue: BTreeSet<u32>,
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
        self.priority.clear();
        self.critical = 0;
        self.overdue.clear();
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

    /// Pieces requested from some link or being written, ascending.
    pub(crate) fn in_flight(&self) -> Vec<u32> {
        (0..self.state.len() as u32)
            .filter(|&p| match self.state[p as usize] {
                PieceState::Writing => true,
                PieceState::Missing => self.requests(p) > 0,
                PieceState::Have => false,
            })
            .collect()
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

    /// Sets the pieces to fetch before the rest, most urgent first; the first `critical` of
    /// them are critical. Pieces past the end are ignored. Replaces the previous list: the
    /// pieces that leave it are rest-tier pieces again.
    pub(crate) fn set_priority(&mut self, pieces: Vec<u32>, critical: usize) {
        let count = self.state.len() as u32;
        let mut seen = std::collections::HashSet::with_capacity(pieces.len());
        let mut kept = Vec::with_capacity(pieces.len());
        let mut kept_critical = 0;
        for (i, piece) in pieces.into_iter().enumerate() {
            if piece < count && seen.insert(piece) {
                kept.push(piece);
                if i < critical {
                    kept_critical += 1;
                }
            }
        }
        self.priority = kept;
        self.critical = kept_critical;
        let critical: std::collections::HashSet<u32> = self.critical_pieces().collect();
        self.overdue.retain(|p| critical.contains(p));
    }

    /// The critical pieces, most urgent first.
    pub(crate) fn critical_pieces(&self) -> impl Iterator<Item = u32> + '_ {
        self.priority[..self.critical].iter().copied()
    }

    /// Whether `piece` is critical.
    pub(crate) fn is_critical(&self, piece: u32) -> bool {
        self.priority[..self.critical].contains(&piece)
    }

    /// Whether `piece` is in the priority list.
    #[cfg(test)]
    pub(crate) fn is_priority(&self, piece: u32) -> bool {
        self.priority.contains(&piece)
    }

    /// Whether `piece` is marked overdue.
    pub(crate) fn is_overdue(&self, piece: u32) -> bool {
        self.overdue.contains(&piece)
    }

    /// Marks a critical piece overdue (it may be requested once more) or not.
    pub(crate) fn set_overdue(&mut self, piece: u32, overdue: bool) {
        if overdue {
            self.overdue.insert(piece);
        } else {
            self.overdue.remove(&piece);
        }
    }

    /// The piece to ask a link for next. First the priority list, in order: a missing piece
    /// the link has (`remote`) and nobody was asked for, or a critical one that is overdue
    /// elsewhere, not asked of this link (`on_link`) and has fewer than two requests out (the
    /// link asked first may be stalled, so another link to the same node may take it). Then
    /// the rarest missing, unrequested piece the link has; failing that, when no unrequested
    /// piece is available anywhere (endgame), the in-flight piece with the fewest requests
    /// that the link has, has not been asked of its node (`on_node`: the pieces requested on
    /// any link to the same node, which share its uplink) and has fewer than `max_requests`
    /// requests out.
    pub(crate) fn next(
        &self,
        remote: &Bitfield,
        on_link: &VecDeque<u32>,
        on_node: &VecDeque<u32>,
        max_requests: u8,
    ) -> Option<u32> {
        for (i, &piece) in self.priority.iter().enumerate() {
            let p = piece as usize;
            if self.state[p] != PieceState::Missing || !remote.has_raw(piece) {
                continue;
            }
            if self.requests[p] == 0 && self.availability[p] > 0 {
                return Some(piece);
            }
            if i < self.critical
                && self.requests[p] < 2
                && self.overdue.contains(&piece)
                && !on_link.contains(&piece)
            {
                return Some(piece);
            }
        }
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
                remote.has_raw(*p) && !on_node.contains(p) && self.requests(*p) < max_requests
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
        if !missing {
            self.overdue.remove(&piece);
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
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(1));
        // The link lacks piece 1 and 3: the next rarest it has.
        assert_eq!(p.next(&bitfield(4, &[0, 2]), NONE, NONE, 2), Some(2));
    }

    #[test]
    fn requested_and_had_pieces_are_not_picked_and_come_back_when_unrequested() {
        let mut p = Picker::new(0);
        p.reset(&bitfield(3, &[0]));
        for piece in 0..3 {
            p.change_availability(piece, true);
        }
        let all = bitfield(3, &[0, 1, 2]);
        assert_eq!(p.next(&all, NONE, NONE, 1), Some(1), "piece 0 is had");
        p.requested(1);
        assert_eq!(p.next(&all, NONE, NONE, 1), Some(2));
        p.unrequest(1);
        assert_eq!(p.next(&all, NONE, NONE, 1), Some(1));
    }

    #[test]
    fn a_seed_spreads_equally_rare_pieces_across_downloaders() {
        let all = bitfield(64, &(0..64).collect::<Vec<_>>());
        let holders: Vec<(u32, u16)> = (0..64).map(|p| (p, 1)).collect();
        let firsts: BTreeSet<u32> = (1..=16)
            .map(|seed| {
                picker(seed, 64, &holders)
                    .next(&all, NONE, NONE, 2)
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
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(1));
        let on_link = VecDeque::from([1, 2]);
        assert_eq!(
            p.next(&all, &on_link, &on_link, 2),
            None,
            "piece 0 is at the limit"
        );
        assert_eq!(p.next(&all, &on_link, &on_link, 3), Some(0));
    }

    #[test]
    fn no_endgame_while_unrequested_pieces_are_available_elsewhere() {
        let mut p = picker(0, 2, &[(0, 1), (1, 1)]);
        p.requested(0);
        // This link has only piece 0 (in flight); piece 1 waits for another link.
        assert_eq!(p.next(&bitfield(2, &[0]), NONE, NONE, 2), None);
    }

    #[test]
    fn unavailable_pieces_are_never_picked() {
        let p = picker(0, 2, &[(1, 1)]);
        // The link claims piece 0 but no availability was counted for it.
        assert_eq!(p.next(&bitfield(2, &[0]), NONE, NONE, 2), None);
    }

    #[test]
    fn the_priority_list_comes_first_in_its_own_order() {
        // Rarity alone would pick piece 0 (one holder) first.
        let mut p = picker(
            7,
            8,
            &[
                (0, 1),
                (1, 3),
                (2, 3),
                (3, 3),
                (4, 3),
                (5, 3),
                (6, 3),
                (7, 3),
            ],
        );
        let all = bitfield(8, &(0..8).collect::<Vec<_>>());
        p.set_priority(vec![5, 6, 7, 1], 1);
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(5));
        p.requested(5);
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(6));
        p.requested(6);
        p.requested(7);
        p.requested(1);
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(0), "then the rarest");
        // A link without the priority pieces gets the rest.
        p.unrequest(7);
        assert_eq!(p.next(&bitfield(8, &[0, 2]), NONE, NONE, 2), Some(0));
    }

    #[test]
    fn a_seek_puts_the_old_window_back_with_the_rest() {
        let mut p = picker(0, 6, &[(0, 2), (1, 2), (2, 2), (3, 2), (4, 1), (5, 2)]);
        let all = bitfield(6, &(0..6).collect::<Vec<_>>());
        p.set_priority(vec![1, 2, 3], 1);
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(1));
        // Seek to the end: 1-3 are ordinary again; 4 is also the rarest.
        p.set_priority(vec![5], 1);
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(5));
        p.requested(5);
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(4));
        assert!(!p.is_priority(1));
    }

    #[test]
    fn an_overdue_critical_piece_is_asked_of_a_second_link_once() {
        let mut p = picker(0, 4, &[(0, 2), (1, 2), (2, 2), (3, 2)]);
        let all = bitfield(4, &[0, 1, 2, 3]);
        p.set_priority(vec![2, 3], 1);
        p.requested(2);
        let first_link = VecDeque::from([2]);
        // Not overdue: the next link gets the read-ahead piece.
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(3));
        p.set_overdue(2, true);
        assert_eq!(
            p.next(&all, NONE, NONE, 2),
            Some(2),
            "asked again elsewhere"
        );
        assert_eq!(
            p.next(&all, &first_link, &first_link, 2),
            Some(3),
            "never twice on the same link"
        );
        p.requested(2);
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(3), "two requests at most");
        // Verified: it leaves the overdue set.
        p.unrequest(2);
        p.unrequest(2);
        p.set_writing(2);
        assert!(p.overdue.is_empty());
    }

    #[test]
    fn a_piece_leaves_the_picker_when_verified_and_written() {
        let mut p = picker(0, 2, &[(0, 1), (1, 1)]);
        let all = bitfield(2, &[0, 1]);
        assert!(p.in_flight().is_empty());
        p.requested(0);
        assert_eq!(p.in_flight(), [0], "requested");
        p.unrequest(0);
        p.set_writing(0);
        assert_eq!(p.state(0), Some(PieceState::Writing));
        assert_eq!(p.in_flight(), [0], "being written");
        assert_eq!(p.next(&all, NONE, NONE, 2), Some(1));
        assert!(p.set_have(0));
        assert!(p.in_flight().is_empty(), "had");
        assert!(!p.set_have(0), "only a piece being written becomes had");
        assert_eq!(p.state(0), Some(PieceState::Have));
        assert_eq!(p.state(2), None);
    }
}
