//! Rate limits and connection admission: what one client or one address may cost the server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// A token bucket: `burst` tokens at most, refilled at `per_sec` tokens a second.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(burst: u32, per_sec: f64, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_sec,
            last: now,
        }
    }

    /// Whether the bucket would be full at `now` (it can be forgotten).
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.per_sec >= self.burst
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets per source address, so reconnecting does not buy a fresh budget.
#[derive(Debug, Default)]
pub(crate) struct AddressBuckets {
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl AddressBuckets {
    /// Takes one token from `ip`'s bucket (a new bucket is full).
    pub(crate) fn try_take(&self, ip: IpAddr, burst: u32, per_sec: f64, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(burst, per_sec, now))
            .try_take(now)
    }

    /// Forgets buckets that have refilled: they are the same as new ones.
    pub(crate) fn prune(&self, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        buckets.retain(|_, b| !b.is_full(now));
    }
}

/// What an accepted TCP connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A full client.
    Node,
    /// Over [`crate::Config::max_connections`] but inside the monitor reserve: `status` is
    /// answered, `hello` is refused with `server_full` and close code 1013.
    MonitorOnly,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Counts open connections, in total and per source address.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connections {
    counts: Arc<Mutex<Counts>>,
}

/// Holds one admitted connection's place; dropping it gives the place back.
#[derive(Debug)]
pub(crate) struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
    /// What the connection may do.
    pub(crate) admission: Admission,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_address.remove(&self.ip);
            }
        }
    }
}

impl Connections {
    /// Admits a connection from `ip`, or `None` when it must be closed at once: `ip` holds
    /// `per_address` connections already, or the server holds `max + reserve`.
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        max: usize,
        reserve: usize,
        per_address: usize,
    ) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = counts.per_address.get(&ip).copied().unwrap_or(0);
        if from_ip >= per_address || counts.total >= max.saturating_add(reserve) {
            return None;
        }
        let admission = if counts.total >= max {
            Admission::MonitorOnly
        } else {
            Admission::Node
        };
        counts.total += 1;
        *counts.per_address.entry(ip).or_default() += 1;
        Some(Slot {
            counts: self.counts.clone(),
            ip,
            admission,
        })
    }

    /// Open connections now.
    #[cfg(test)]
    fn total(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, 2.0, t0);
        assert!((0..3).all(|_| bucket.try_take(t0)));
        assert!(!bucket.try_take(t0));
        assert!(bucket.try_take(t0 + Duration::from_millis(500)));
        assert!(!bucket.try_take(t0 + Duration::from_millis(500)));
        assert_eq!(
            (0..10)
                .filter(|_| bucket.try_take(t0 + Duration::from_secs(100)))
                .count(),
            3,
            "never more than the burst"
        );
    }

    #[test]
    fn address_buckets_survive_reconnects_and_are_pruned_when_full() {
        let t0 = Instant::now();
        let buckets = AddressBuckets::default();
        let ip: IpAddr = "10.0.0.9".parse().expect("ip");
        assert!((0..2).all(|_| buckets.try_take(ip, 2, 1.0, t0)));
        assert!(
            !buckets.try_take(ip, 2, 1.0, t0),
            "same address, same bucket"
        );
        buckets.prune(t0);
        assert!(!buckets.try_take(ip, 2, 1.0, t0), "an empty bucket is kept");
        buckets.prune(t0 + Duration::from_secs(5));
        assert!(buckets.buckets.lock().expect("lock").is_empty());
    }

    /// Issue 8, item 10: per-address caps and a reserve only monitors may use.
    #[test]
    fn admission_caps_each_address_and_keeps_a_monitor_reserve() {
        let connections = Connections::default();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = connections.admit(a, 3, 1, 2).expect("admitted");
        let second = connections.admit(a, 3, 1, 2).expect("admitted");
        assert!(connections.admit(a, 3, 1, 2).is_none(), "per-address cap");
        let third = connections.admit(b, 3, 1, 2).expect("admitted");
        assert_eq!(third.admission, Admission::Node);
        let monitor = connections.admit(b, 3, 1, 2).expect("reserve");
        assert_eq!(monitor.admission, Admission::MonitorOnly);
        assert!(
            connections
                .admit("10.0.0.3".parse().expect("ip"), 3, 1, 2)
                .is_none()
        );
        drop(first);
        assert!(
            connections
                .admit(a, 3, 1, 2)
                .is_some_and(|s| s.admission == Admission::MonitorOnly)
        );
        drop((second, third, monitor));
        assert_eq!(connections.total(), 0);
    }
}
