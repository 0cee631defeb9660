//! Which holders a download connects to, when it retries one, and when it gives up.
//! Sans-IO: the actor feeds it what happened (holders found in the index, a connection ready
//! or failed, a link closed, a peer banned, a refresh) with the time, and does what it says
//! (open these connections, fail the download). Unit-tested with simulated time below.
//!
//! Rules (issue 8's measurements):
//! - at most `max_peers` holders at once, `connections_per_peer` peer connections to each;
//! - a holder *fails* when a connection to it does not open, or when its last link ends by
//!   its fault (stalled, broke the protocol, closed); each failure backs it off 1, 2, 4 s
//!   (doubling, at most 16 s), and after [`MAX_PEER_FAILURES`] it is not tried again. A
//!   delivered piece never forgives a failure: a peer that served one piece and then stalled
//!   made `shoal get` reconnect 80 times in 120 s;
//! - a banned holder is never tried again (nor waited for);
//! - the download gives up after two refreshes in a row that found no link, nothing pending,
//!   no holder backing off and no holder to try.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use shoal_protocol::NodeId;

use crate::events::PeerFault;

/// Failures after which a holder is not tried again by a download.
pub(crate) const MAX_PEER_FAILURES: u32 = 3;
/// Wait before retrying a holder after its first failure; doubled after each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between retries of one holder.
const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// Refreshes in a row with nothing to do before a download gives up.
const HOPELESS_REFRESHES: u32 = 2;

#[derive(Debug, Default)]
struct PeerSlots {
    /// Links open to this holder.
    live: usize,
    /// Connections being set up.
    pending: usize,
    /// Times this holder failed this download (never reset).
    failures: u32,
    /// Not tried again before this.
    retry_at: Option<Instant>,
}

impl PeerSlots {
    fn in_use(&self) -> bool {
        self.live + self.pending > 0
    }

    fn fail(&mut self, now: Instant) {
        self.failures += 1;
        let backoff = FIRST_BACKOFF * 2u32.saturating_pow(self.failures.saturating_sub(1));
        self.retry_at = Some(now + backoff.min(MAX_BACKOFF));
    }

    /// Not given up and not backing off.
    fn may_try(&self, now: Instant) -> bool {
        self.failures < MAX_PEER_FAILURES && self.retry_at.is_none_or(|t| t <= now)
    }

    /// A retry is still to come.
    fn waiting(&self, now: Instant) -> bool {
        self.failures < MAX_PEER_FAILURES && self.retry_at.is_some_and(|t| t > now)
    }
}

/// Why a download gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// No holder was ever reachable and none is listed.
    NoHolders,
    /// Every holder failed: each one's last fault, the latest last.
    SourcesFailed {
        /// (holder, its last fault).
        peers: Vec<(NodeId, PeerFault)>,
    },
}

/// One download's holder policy.
#[derive(Debug)]
pub(crate) struct HolderPolicy {
    connections_per_peer: usize,
    max_peers: usize,
    peers: HashMap<NodeId, PeerSlots>,
    banned: HashSet<NodeId>,
    /// Each holder's last fault, the latest last.
    faults: Vec<(NodeId, PeerFault)>,
    hopeless_refreshes: u32,
}

impl HolderPolicy {
    /// A policy opening `connections_per_peer` connections to each of at most `max_peers`
    /// holders (each at least 1).
    pub(crate) fn new(connections_per_peer: usize, max_peers: usize) -> Self {
        Self {
            connections_per_peer: connections_per_peer.max(1),
            max_peers: max_peers.max(1),
            peers: HashMap::new(),
            banned: HashSet::new(),
            faults: Vec::new(),
            hopeless_refreshes: 0,
        }
    }

    /// Holders listed for the content (the caller leaves itself out): the connections to open
    /// now, one entry per connection.
    pub(crate) fn holders_found(&mut self, holders: &[NodeId], now: Instant) -> Vec<NodeId> {
        let mut in_use = self.peers.values().filter(|p| p.in_use()).count();
        let mut open = Vec::new();
        for &holder in holders {
            if self.banned.contains(&holder) {
                continue;
            }
            let slots = self.peers.entry(holder).or_default();
            if slots.in_use() || !slots.may_try(now) {
                continue;
            }
            if in_use >= self.max_peers {
                break;
            }
            in_use += 1;
            slots.pending += self.connections_per_peer;
            open.extend(std::iter::repeat_n(holder, self.connections_per_peer));
        }
        open
    }

    /// A connection to `peer` opened: its link is live.
    pub(crate) fn link_ready(&mut self, peer: NodeId) {
        let slots = self.peers.entry(peer).or_default();
        slots.pending = slots.pending.saturating_sub(1);
        slots.live += 1;
    }

    /// A connection to `peer` did not open (`reason` in words).
    pub(crate) fn connect_failed(&mut self, peer: NodeId, reason: &str, now: Instant) {
        let slots = self.peers.entry(peer).or_default();
        slots.pending = slots.pending.saturating_sub(1);
        if !slots.in_use() {
            slots.fail(now);
        }
        self.fault(peer, PeerFault::Connect(reason.to_owned()));
    }

    /// A link to `peer` closed; `failure` says what the peer did wrong, `None` when the link
    /// ended through no fault of the peer's (idle, surplus). One failure per episode: only
    /// when the peer's last link is gone.
    pub(crate) fn link_closed(&mut self, peer: NodeId, failure: Option<PeerFault>, now: Instant) {
        let slots = self.peers.entry(peer).or_default();
        slots.live = slots.live.saturating_sub(1);
        let Some(failure) = failure else {
            return;
        };
        if !slots.in_use() {
            slots.fail(now);
        }
        if !self.banned.contains(&peer) {
            self.fault(peer, failure);
        }
    }

    /// The swarm banned `peer` for this content.
    pub(crate) fn banned(&mut self, peer: NodeId, reason: crate::CloseReason) {
        self.banned.insert(peer);
        self.fault(peer, PeerFault::Banned(reason));
    }

    /// Notes `peer`'s latest fault.
    fn fault(&mut self, peer: NodeId, fault: PeerFault) {
        self.faults.retain(|(p, _)| *p != peer);
        self.faults.push((peer, fault));
    }

    /// A periodic look at the index found `holders`: the connections to open, or a reason
    /// to give up.
    pub(crate) fn refreshed(
        &mut self,
        holders: &[NodeId],
        now: Instant,
    ) -> Result<Vec<NodeId>, GiveUp> {
        let open = self.holders_found(holders, now);
        let active = self.peers.values().any(PeerSlots::in_use);
        // A banned holder's backoff is no retry to wait for.
        let waiting = self
            .peers
            .iter()
            .any(|(id, p)| !self.banned.contains(id) && p.waiting(now));
        if open.is_empty() && !active && !waiting {
            self.hopeless_refreshes += 1;
        } else {
            self.hopeless_refreshes = 0;
        }
        if self.hopeless_refreshes >= HOPELESS_REFRESHES {
            return Err(if self.faults.is_empty() {
                GiveUp::NoHolders
            } else {
                GiveUp::SourcesFailed {
                    peers: self.faults.clone(),
                }
            });
        }
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloseReason;

    fn stalled() -> PeerFault {
        PeerFault::Link(CloseReason::Stalled)
    }

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|_| NodeId::random()).collect()
    }

    #[test]
    fn opens_connections_to_at_most_max_peers_holders() {
        let t0 = Instant::now();
        let mut p = HolderPolicy::new(2, 3);
        let holders = nodes(5);
        let open = p.holders_found(&holders, t0);
        assert_eq!(open.len(), 6, "2 connections to each of 3 holders");
        assert!(open[..6].iter().all(|h| holders[..3].contains(h)));
        assert!(p.holders_found(&holders, t0).is_empty(), "all slots in use");
        // One holder's connections both fail: its slot frees for the fourth holder.
        p.connect_failed(holders[0], "timed out", t0);
        assert!(
            p.holders_found(&holders, t0).is_empty(),
            "one is still pending"
        );
        p.connect_failed(holders[0], "timed out", t0);
        assert_eq!(p.holders_found(&holders, t0), vec![holders[3]; 2]);
    }

    #[test]
    fn a_failing_holder_backs_off_1_2_4_s_and_is_then_given_up() {
        let t0 = Instant::now();
        let mut p = HolderPolicy::new(1, 8);
        let h = nodes(1);
        let mut now = t0;
        for backoff in [1, 2, 4] {
            assert_eq!(p.holders_found(&h, now), h, "tried at {:?}", now - t0);
            p.connect_failed(h[0], "no answer", now);
            assert!(p.holders_found(&h, now).is_empty(), "backing off");
            now += Duration::from_millis(backoff * 1000 - 1);
            assert!(p.holders_found(&h, now).is_empty(), "still backing off");
            now += Duration::from_millis(1);
        }
        // Three failures: never again, however long.
        now += Duration::from_secs(3600);
        assert!(p.holders_found(&h, now).is_empty());
    }

    #[test]
    fn a_delivered_piece_does_not_forgive_a_stall() {
        let t0 = Instant::now();
        let mut p = HolderPolicy::new(1, 8);
        let h = nodes(1);
        let mut now = t0;
        for _ in 0..MAX_PEER_FAILURES {
            assert_eq!(p.holders_found(&h, now), h);
            p.link_ready(h[0]);
            // Serves a piece, then stalls.
            p.link_closed(h[0], Some(stalled()), now);
            now += MAX_BACKOFF;
        }
        assert!(p.holders_found(&h, now).is_empty());
    }

    #[test]
    fn links_closed_without_fault_cost_nothing_and_one_episode_counts_once() {
        let t0 = Instant::now();
        let mut p = HolderPolicy::new(2, 8);
        let h = nodes(1);
        assert_eq!(p.holders_found(&h, t0).len(), 2);
        p.link_ready(h[0]);
        p.link_ready(h[0]);
        p.link_closed(h[0], None, t0);
        p.link_closed(h[0], None, t0);
        assert_eq!(p.holders_found(&h, t0).len(), 2, "idle links: no backoff");
        p.link_ready(h[0]);
        p.link_ready(h[0]);
        p.link_closed(h[0], Some(stalled()), t0);
        p.link_closed(h[0], Some(stalled()), t0);
        // One failure (the episode), so a 1 s backoff, not 2 s.
        assert!(p.holders_found(&h, t0).is_empty());
        assert_eq!(p.holders_found(&h, t0 + FIRST_BACKOFF).len(), 2);
    }

    #[test]
    fn a_banned_holder_is_never_tried_again() {
        let t0 = Instant::now();
        let mut p = HolderPolicy::new(1, 8);
        let h = nodes(1);
        assert_eq!(p.holders_found(&h, t0), h);
        p.link_ready(h[0]);
        p.banned(h[0], CloseReason::CorruptPiece(3));
        p.link_closed(
            h[0],
            Some(PeerFault::Link(CloseReason::CorruptPiece(3))),
            t0,
        );
        assert!(
            p.holders_found(&h, t0 + Duration::from_secs(3600))
                .is_empty()
        );
        assert_eq!(
            p.refreshed(&h, t0),
            Ok(vec![]),
            "first hopeless refresh: wait once more"
        );
        assert_eq!(
            p.refreshed(&h, t0),
            Err(GiveUp::SourcesFailed {
                peers: vec![(h[0], PeerFault::Banned(CloseReason::CorruptPiece(3)))]
            })
        );
    }

    #[test]
    fn gives_up_after_two_hopeless_refreshes_not_while_a_retry_is_due() {
        let t0 = Instant::now();
        let mut p = HolderPolicy::new(1, 8);
        assert_eq!(p.refreshed(&[], t0), Ok(vec![]));
        assert_eq!(p.refreshed(&[], t0), Err(GiveUp::NoHolders));

        let mut p = HolderPolicy::new(1, 8);
        let h = nodes(1);
        assert_eq!(p.refreshed(&h, t0), Ok(h.clone()));
        p.connect_failed(h[0], "no answer", t0);
        // Backing off: a retry is due, so refreshes are not hopeless.
        assert_eq!(p.refreshed(&h, t0), Ok(vec![]));
        assert_eq!(p.refreshed(&h, t0), Ok(vec![]));
        // The holder left the index and its retry time passed: two refreshes and it gives up.
        let later = t0 + FIRST_BACKOFF;
        assert_eq!(p.refreshed(&[], later), Ok(vec![]));
        let gave_up = p.refreshed(&[], later);
        assert!(
            matches!(&gave_up, Err(GiveUp::SourcesFailed { peers }) if peers == &[(h[0], PeerFault::Connect("no answer".to_owned()))]),
            "{gave_up:?}"
        );
    }

    #[test]
    fn a_holder_back_in_the_index_resets_the_count() {
        let t0 = Instant::now();
        let mut p = HolderPolicy::new(1, 8);
        let h = nodes(1);
        assert_eq!(p.refreshed(&[], t0), Ok(vec![]));
        assert_eq!(p.refreshed(&h, t0), Ok(h.clone()));
        p.link_ready(h[0]);
        p.link_closed(h[0], None, t0);
        assert_eq!(p.refreshed(&[], t0), Ok(vec![]));
        assert_eq!(p.refreshed(&[], t0), Err(GiveUp::NoHolders));
    }
}
