//! Bandwidth caps (issue 10, item 6; webtorrent-desktop#435, croc#429): one token bucket per
//! direction, shared by every link of the node. A link's writer takes tokens before it hands
//! a message to its data channel; a link's reader takes tokens before it passes a received
//! message on, so a capped download backpressures the sender through the data channel's
//! bounded receive queue and SCTP's window.
//!
//! The bucket lends: a message larger than the tokens left is let through after a wait that
//! pays its debt, so callers never starve and the long-run rate is the cap. The bucket itself
//! is sans-IO (time passed in) and unit-tested; [`RateLimit::acquire`] does the sleeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::actor::lock;

/// The most a bucket holds, at least: one maximum-size data channel message (bytes).
const MIN_BURST_BYTES: f64 = 262_144.0;

/// A token bucket counted in bytes.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Refill rate, bytes per second.
    rate: f64,
    /// Most tokens held (bytes): a quarter second of the rate, at least one message.
    capacity: f64,
    /// Tokens now; negative while callers wait out a debt.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket refilling at `bytes_per_sec` (at least 1).
    pub(crate) fn new(bytes_per_sec: u64, now: Instant) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        let capacity = (rate / 4.0).max(MIN_BURST_BYTES);
        Self {
            rate,
            capacity,
            tokens: capacity,
            at: now,
        }
    }

    /// Takes `bytes`; returns how long the caller waits before sending them (zero when the
    /// bucket held enough).
    pub(crate) fn reserve(&mut self, bytes: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A cap on one direction's bytes per second for the whole node, or none; can be changed
/// while links run ([`RateLimit::set`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct RateLimit(Arc<Mutex<Option<Bucket>>>);

impl RateLimit {
    /// At most `bytes_per_sec`; `None` is no cap.
    pub(crate) fn new(bytes_per_sec: Option<u64>) -> Self {
        let limit = Self::default();
        limit.set(bytes_per_sec);
        limit
    }

    /// Changes the cap (a full bucket at the new rate); `None` lifts it.
    pub(crate) fn set(&self, bytes_per_sec: Option<u64>) {
        *lock(&self.0) = bytes_per_sec.map(|rate| Bucket::new(rate, Instant::now()));
    }

    /// The cap now, bytes per second; `None` when there is none.
    pub(crate) fn bytes_per_sec(&self) -> Option<u64> {
        lock(&self.0).as_ref().map(|bucket| bucket.rate as u64)
    }

    /// Waits until `bytes` may pass.
    pub(crate) async fn acquire(&self, bytes: usize) {
        let wait = match lock(&self.0).as_mut() {
            Some(bucket) => bucket.reserve(bytes, Instant::now()),
            None => return,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The node's caps, one per direction.
#[derive(Clone, Debug, Default)]
pub(crate) struct Limits {
    /// Bytes sent to peers.
    pub(crate) upload: RateLimit,
    /// Bytes received from peers.
    pub(crate) download: RateLimit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let start = Instant::now();
        let mut bucket = Bucket::new(1 << 20, start);
        // A quarter second of 1 MiB/s passes at once.
        assert_eq!(bucket.reserve(256 << 10, start), Duration::ZERO);
        // The next 256 KiB wait a quarter second.
        let wait = bucket.reserve(256 << 10, start);
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn over_a_long_run_the_rate_is_the_cap() {
        // 100 senders of 64 KiB messages, each sending when its wait is over.
        let start = Instant::now();
        let rate = 8u64 << 20;
        let mut bucket = Bucket::new(rate, start);
        let mut now = start;
        let mut sent = 0u64;
        while now.duration_since(start) < Duration::from_secs(10) {
            now += bucket.reserve(64 << 10, now);
            sent += 64 << 10;
        }
        let secs = now.duration_since(start).as_secs_f64();
        let measured = sent as f64 / secs;
        // Within the burst of the cap (2 MiB over 10 s is 2.5 %).
        assert!(
            (measured / rate as f64 - 1.0).abs() < 0.03,
            "{measured} bytes/s for a cap of {rate}"
        );
    }

    #[test]
    fn idle_time_refills_only_up_to_the_capacity() {
        let start = Instant::now();
        let mut bucket = Bucket::new(1 << 20, start);
        let later = start + Duration::from_secs(60);
        // A minute idle buys a quarter second of burst, not a minute.
        assert_eq!(bucket.reserve(256 << 10, later), Duration::ZERO);
        assert!(bucket.reserve(256 << 10, later) > Duration::from_millis(200));
    }
}
