//! Waiting for the slowest member, without hanging (issue 11, item 4): the host's room holds
//! playback while a member buffers, and goes on without it after a timeout.
//!
//! Each member reports whether its player has the next few seconds ([`WaitPolicy::report`]);
//! while one does not, [`WaitPolicy::decide`] says to wait for it (the member that has been
//! waited for longest first, so the room can say "waiting for Ana (buffering, 42 %)"). A
//! member that has not been ready for [`WaitConfig::timeout_ms`] is passed over until it is
//! ready again (it then catches up by seeking; see [`crate::Follower`]); the host may pass
//! over everyone waited for now ([`WaitPolicy::go_on`]). Jellyfin SyncPlay's "Waiting" could
//! hang forever (jellyfin#17864): here every wait ends.

use std::collections::BTreeMap;

/// How long the room waits for one member.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitConfig {
    /// A member not ready for this long is passed over, ms. Default 15,000 (a room setting).
    pub timeout_ms: f64,
}

impl Default for WaitConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 15_000.0,
        }
    }
}

/// What the room should do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<M> {
    /// Everyone it waits for is ready: play (if the host wants to).
    Go,
    /// Hold playback for this member, not ready since `since_ms`.
    Wait {
        /// The member.
        member: M,
        /// Since when it has not been ready, ms (the caller's clock).
        since_ms: f64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Status {
    /// Not ready since (ms), or ready.
    not_ready_since: Option<f64>,
    /// Passed over in its current episode of not being ready.
    passed_over: bool,
}

/// The host's view of who is ready. `M` names a member (a node id).
#[derive(Debug, Clone)]
pub struct WaitPolicy<M: Ord + Clone> {
    config: WaitConfig,
    members: BTreeMap<M, Status>,
}

impl<M: Ord + Clone> WaitPolicy<M> {
    /// A room where nobody has reported.
    pub fn new(config: WaitConfig) -> Self {
        Self {
            config,
            members: BTreeMap::new(),
        }
    }

    /// `member` is (`ready`) or is not able to play the next few seconds, at `now` (ms).
    pub fn report(&mut self, member: M, ready: bool, now: f64) {
        let status = self.members.entry(member).or_insert(Status {
            not_ready_since: None,
            passed_over: false,
        });
        match (ready, status.not_ready_since) {
            (true, _) => {
                status.not_ready_since = None;
                status.passed_over = false;
            }
            (false, None) => status.not_ready_since = Some(now),
            (false, Some(_)) => {}
        }
    }

    /// `member` left the room.
    pub fn remove(&mut self, member: &M) {
        self.members.remove(member);
    }

    /// The host passes over everyone waited for now; each is waited for again only once it
    /// was ready and stops being ready.
    pub fn go_on(&mut self) {
        for status in self.members.values_mut() {
            if status.not_ready_since.is_some() {
                status.passed_over = true;
            }
        }
    }

    /// Whether to hold playback now, and for whom. Passes over members past the timeout.
    pub fn decide(&mut self, now: f64) -> Decision<M> {
        let timeout = self.config.timeout_ms;
        for status in self.members.values_mut() {
            if let Some(since) = status.not_ready_since
                && now - since >= timeout
            {
                status.passed_over = true;
            }
        }
        self.members
            .iter()
            .filter(|(_, s)| !s.passed_over)
            .filter_map(|(m, s)| s.not_ready_since.map(|since| (m, since)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(Decision::Go, |(m, since)| Decision::Wait {
                member: m.clone(),
                since_ms: since,
            })
    }

    /// When [`WaitPolicy::decide`] may change without a report: the next timeout, ms.
    pub fn next_deadline(&self) -> Option<f64> {
        self.members
            .values()
            .filter(|s| !s.passed_over)
            .filter_map(|s| s.not_ready_since)
            .map(|since| since + self.config.timeout_ms)
            .reduce(f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::{Decision, WaitConfig, WaitPolicy};

    #[test]
    fn the_room_waits_for_a_buffering_member_and_goes_on_when_it_is_ready() {
        let mut w = WaitPolicy::new(WaitConfig::default());
        w.report("ana", true, 0.0);
        w.report("bo", true, 0.0);
        assert_eq!(w.decide(0.0), Decision::Go);
        w.report("bo", false, 1000.0);
        w.report("ana", false, 2000.0);
        // Bo has waited longest.
        assert_eq!(
            w.decide(2500.0),
            Decision::Wait {
                member: "bo",
                since_ms: 1000.0
            }
        );
        w.report("bo", true, 3000.0);
        assert_eq!(
            w.decide(3000.0),
            Decision::Wait {
                member: "ana",
                since_ms: 2000.0
            }
        );
        w.report("ana", true, 3500.0);
        assert_eq!(w.decide(3500.0), Decision::Go);
    }

    #[test]
    fn a_member_that_stays_late_is_passed_over_after_the_timeout_and_waited_for_again_later() {
        let mut w = WaitPolicy::new(WaitConfig::default());
        w.report("bo", false, 10_000.0);
        assert_eq!(w.next_deadline(), Some(25_000.0));
        assert!(matches!(w.decide(24_999.0), Decision::Wait { .. }));
        assert_eq!(w.decide(25_000.0), Decision::Go);
        assert_eq!(w.next_deadline(), None);
        // Still late: no new wait. Ready, then late again: a new wait.
        w.report("bo", false, 30_000.0);
        assert_eq!(w.decide(30_000.0), Decision::Go);
        w.report("bo", true, 31_000.0);
        w.report("bo", false, 40_000.0);
        assert!(matches!(
            w.decide(40_000.0),
            Decision::Wait {
                since_ms: 40_000.0,
                ..
            }
        ));
        // The host goes on at once; leaving ends a wait too.
        w.go_on();
        assert_eq!(w.decide(40_001.0), Decision::Go);
        w.report("cy", false, 41_000.0);
        w.remove(&"cy");
        assert_eq!(w.decide(41_000.0), Decision::Go);
    }
}
