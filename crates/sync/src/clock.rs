//! The host's clock seen from a member: NTP-style exchanges (RFC 5905 §8) over the room's
//! relay. A member sends a [`Ping`] stamped with its clock (`t0`); the host answers a
//! [`Pong`] with the times it received (`t1`) and answered (`t2`) on its clock; the member
//! notes when the answer came (`t3`). Then
//!
//! ```text
//! offset = ((t1 - t0) + (t2 - t3)) / 2      host clock minus member clock
//! delay  = (t3 - t0) - (t2 - t1)            the round trip, host time excluded
//! ```
//!
//! `offset` is exact when both directions take equally long; queueing on either side makes it
//! wrong by up to half the extra delay, which is why the estimate is the sample with the
//! smallest delay among the last [`ClockConfig::window`]. Clocks also run at slightly
//! different rates (crystals are within about 100 ppm; the simulator uses 200): samples are
//! refreshed every [`ClockConfig::interval_ms`], so the chosen one is at most
//! `window x interval` old (16 s: 3.2 ms at 200 ppm).

use std::collections::VecDeque;

/// How often and how many exchanges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockConfig {
    /// Samples kept; the estimate is the one with the smallest delay. Default 8.
    pub window: usize,
    /// Time between pings once the window is full, ms. Default 2000.
    pub interval_ms: f64,
    /// Time between pings while the window fills (a member that just joined), ms.
    /// Default 200.
    pub warmup_interval_ms: f64,
    /// A ping unanswered for this long is forgotten (its pong, if it comes, is ignored), ms.
    /// Default 10,000.
    pub timeout_ms: f64,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self {
            window: 8,
            interval_ms: 2000.0,
            warmup_interval_ms: 200.0,
            timeout_ms: 10_000.0,
        }
    }
}

/// A member's clock request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ping {
    /// Names the exchange.
    pub id: u64,
    /// When the member sent it, member clock, ms.
    pub t0: f64,
}

/// The host's answer to a [`Ping`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pong {
    /// The ping's id.
    pub id: u64,
    /// The ping's `t0`, echoed (for the record: the member uses its own).
    pub t0: f64,
    /// When the host received the ping, host clock, ms.
    pub t1: f64,
    /// When the host sent this answer, host clock, ms.
    pub t2: f64,
}

/// The host's side of an exchange: the answer to `ping`, received at `received_at` and sent
/// at `sent_at` (host clock, ms).
pub fn pong(ping: &Ping, received_at: f64, sent_at: f64) -> Pong {
    Pong {
        id: ping.id,
        t0: ping.t0,
        t1: received_at,
        t2: sent_at,
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    offset: f64,
    delay: f64,
}

/// A member's estimate of the host's clock.
#[derive(Debug, Clone)]
pub struct ClockSync {
    config: ClockConfig,
    samples: VecDeque<Sample>,
    /// Pings sent and not answered: id and `t0`.
    outstanding: VecDeque<(u64, f64)>,
    next_id: u64,
    next_ping_at: f64,
}

impl ClockSync {
    /// A member that has measured nothing yet; its first ping is due at `now` (member
    /// clock, ms).
    pub fn new(config: ClockConfig, now: f64) -> Self {
        Self {
            config,
            samples: VecDeque::new(),
            outstanding: VecDeque::new(),
            next_id: 1,
            next_ping_at: now,
        }
    }

    /// When the next ping is due, member clock, ms.
    pub fn next_ping_at(&self) -> f64 {
        self.next_ping_at
    }

    /// The ping to send now, if one is due.
    pub fn poll_ping(&mut self, now: f64) -> Option<Ping> {
        self.outstanding
            .retain(|(_, t0)| now - *t0 <= self.config.timeout_ms);
        if now < self.next_ping_at {
            return None;
        }
        let warm = self.samples.len() >= self.config.window.max(1);
        self.next_ping_at = now
            + if warm {
                self.config.interval_ms
            } else {
                self.config.warmup_interval_ms
            };
        let ping = Ping {
            id: self.next_id,
            t0: now,
        };
        self.next_id += 1;
        if self.outstanding.len() >= self.config.window.max(1) {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((ping.id, ping.t0));
        Some(ping)
    }

    /// An answer arrived at `now` (member clock, ms). False (and ignored) when its id answers
    /// no ping still waiting, or its times are impossible (a negative delay beyond rounding,
    /// non-finite numbers): a pong is network input.
    pub fn on_pong(&mut self, pong: &Pong, now: f64) -> bool {
        // By id; `t0` is this side's own record, not the echo (a JSON round trip may move
        // the echo by a unit in the last place, and the echo is network input anyway).
        let Some(i) = self.outstanding.iter().position(|(id, _)| *id == pong.id) else {
            return false;
        };
        let Some((_, t0)) = self.outstanding.remove(i) else {
            return false;
        };
        if ![t0, pong.t1, pong.t2, now].iter().all(|t| t.is_finite()) {
            return false;
        }
        let delay = (now - t0) - (pong.t2 - pong.t1);
        if delay < -1.0 || pong.t2 < pong.t1 {
            return false;
        }
        let offset = ((pong.t1 - t0) + (pong.t2 - now)) / 2.0;
        if !offset.is_finite() || !delay.is_finite() {
            return false;
        }
        if self.samples.len() >= self.config.window.max(1) {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            offset,
            delay: delay.max(0.0),
        });
        true
    }

    fn best(&self) -> Option<Sample> {
        self.samples
            .iter()
            .copied()
            .min_by(|a, b| a.delay.total_cmp(&b.delay))
    }

    /// Host clock minus member clock, ms; `None` before the first answer.
    pub fn offset_ms(&self) -> Option<f64> {
        self.best().map(|s| s.offset)
    }

    /// The round trip of the best sample, ms.
    pub fn rtt_ms(&self) -> Option<f64> {
        self.best().map(|s| s.delay)
    }

    /// The largest round trip among the samples kept, ms (for [`crate::command_lead_ms`]).
    pub fn max_rtt_ms(&self) -> Option<f64> {
        self.samples.iter().map(|s| s.delay).reduce(f64::max)
    }

    /// The host's clock when the member's reads `local`, ms.
    pub fn host_time(&self, local: f64) -> Option<f64> {
        self.offset_ms().map(|o| local + o)
    }

    /// The member's clock when the host's reads `host`, ms.
    pub fn local_time(&self, host: f64) -> Option<f64> {
        self.offset_ms().map(|o| host - o)
    }

    /// Whether the window is full (the estimate has had its eight tries).
    pub fn is_settled(&self) -> bool {
        self.samples.len() >= self.config.window.max(1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{ClockConfig, ClockSync, pong};

    #[test]
    fn symmetric_delays_give_the_exact_offset_and_the_least_delayed_sample_wins() {
        let mut c = ClockSync::new(ClockConfig::default(), 0.0);
        // Host clock = member clock + 5000; 20 ms each way, then one exchange queued 300 ms
        // on the way back.
        let ping = c.poll_ping(0.0).unwrap();
        assert!(c.on_pong(&pong(&ping, 5020.0, 5020.0), 40.0));
        assert_eq!(c.offset_ms(), Some(5000.0));
        assert_eq!(c.rtt_ms(), Some(40.0));
        assert!(c.poll_ping(100.0).is_none(), "not due yet");
        let ping = c.poll_ping(200.0).unwrap();
        assert!(c.on_pong(&pong(&ping, 5220.0, 5220.0), 540.0));
        assert_eq!(c.offset_ms(), Some(5000.0), "the queued sample is not used");
        assert_eq!(c.max_rtt_ms(), Some(340.0));
        assert_eq!(c.host_time(1000.0), Some(6000.0));
        assert_eq!(c.local_time(6000.0), Some(1000.0));
    }

    #[test]
    fn unknown_repeated_and_impossible_pongs_are_ignored() {
        let mut c = ClockSync::new(ClockConfig::default(), 0.0);
        let ping = c.poll_ping(0.0).unwrap();
        let mut forged = pong(&ping, 10.0, 10.0);
        forged.id += 1;
        assert!(!c.on_pong(&forged, 20.0));
        // Answered before it was asked (t3 < t0 beyond what host time explains).
        assert!(!c.on_pong(&pong(&ping, 10.0, 500.0), 20.0));
        assert_eq!(c.offset_ms(), None);
        let ping = c.poll_ping(1000.0).unwrap();
        assert!(!c.on_pong(&pong(&ping, f64::NAN, 1.0), 1010.0));
        let ping = c.poll_ping(1500.0).unwrap();
        assert!(!c.on_pong(&pong(&ping, 1e308, 1e308), 1510.0), "overflows");
        let ping = c.poll_ping(2000.0).unwrap();
        assert!(c.on_pong(&pong(&ping, 2005.0, 2005.0), 2010.0));
        assert!(!c.on_pong(&pong(&ping, 2005.0, 2005.0), 2010.0), "twice");
        // A ping older than the timeout is forgotten.
        let ping = c.poll_ping(3000.0).unwrap();
        c.poll_ping(20_000.0);
        assert!(!c.on_pong(&pong(&ping, 3005.0, 3005.0), 20_001.0));
    }

    #[test]
    fn pings_come_fast_until_the_window_is_full_then_every_two_seconds() {
        let config = ClockConfig::default();
        let mut c = ClockSync::new(config, 0.0);
        let mut now = 0.0;
        for _ in 0..config.window {
            let ping = c.poll_ping(now).unwrap();
            assert!(c.on_pong(&pong(&ping, now + 1.0, now + 1.0), now + 2.0));
            now = c.next_ping_at();
        }
        assert!(c.is_settled());
        assert_eq!(now, 200.0 * config.window as f64);
        c.poll_ping(now).unwrap();
        assert_eq!(c.next_ping_at(), now + 2000.0);
    }
}
