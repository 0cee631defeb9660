//! Pacing of `announce` messages: sans-IO, time passed in.
//!
//! The signaling server lets one connection send [`INDEX_CHANGES_BURST`] index changes
//! (`announce`, `unannounce`) at once and [`INDEX_CHANGES_PER_SEC`] per second after that,
//! counting messages, not files (docs/protocol.md §2). A user who shares a folder of a few
//! hundred files makes one share per file; sent one message each, the 65th would be refused.
//! The pacer keeps the node inside the server's budget instead: shares wait in a queue while
//! no message may be sent, and whatever has queued goes out together, in batches of at most
//! [`MAX_ANNOUNCE_BATCH`], when the budget allows the next message. Unshares go the same way
//! (`unannounce`, batched too), so removing many shares at once is never refused either: the
//! server closes a connection after 16 refusals.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use shoal_protocol::{INDEX_CHANGES_BURST, INDEX_CHANGES_PER_SEC, InfoHash, MAX_ANNOUNCE_BATCH};

/// A token bucket mirroring the server's, and the shares waiting for a token.
#[derive(Debug)]
pub(crate) struct AnnouncePacer {
    /// Messages that may be sent now; below zero after unpaced sends (`unannounce`).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
    /// Waiting shares, oldest first, each once.
    queue: VecDeque<InfoHash>,
    /// Unshared contents to tell the server about, oldest first, each once.
    unqueue: VecDeque<InfoHash>,
}

/// One message the pacer lets out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// `announce` these shares.
    Announce(Vec<InfoHash>),
    /// `unannounce` these contents.
    Unannounce(Vec<InfoHash>),
}

impl AnnouncePacer {
    /// A full budget at `now`, as the server grants a new connection.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            tokens: f64::from(INDEX_CHANGES_BURST),
            at: now,
            queue: VecDeque::new(),
            unqueue: VecDeque::new(),
        }
    }

    /// Starts over with a full budget and nothing queued (a new connection to the server).
    pub(crate) fn reset(&mut self, now: Instant) {
        *self = Self::new(now);
    }

    /// Queues shares to announce; one already queued keeps its place.
    pub(crate) fn push(&mut self, hashes: impl IntoIterator<Item = InfoHash>) {
        for hash in hashes {
            if !self.queue.contains(&hash) {
                self.queue.push_back(hash);
            }
        }
    }

    /// `hash` is no longer shared: if its announcement is still queued, it is dropped (the
    /// server never heard of it); else an `unannounce` is queued.
    pub(crate) fn unannounce(&mut self, hash: InfoHash) {
        if self.queue.contains(&hash) {
            self.queue.retain(|h| *h != hash);
        } else if !self.unqueue.contains(&hash) {
            self.unqueue.push_back(hash);
        }
    }

    /// The server refused a batch as over its rate: the budget is spent, and the batch goes
    /// back to the front of the queue.
    pub(crate) fn refused(&mut self, now: Instant, batch: Vec<InfoHash>) {
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
        for hash in batch.into_iter().rev() {
            if !self.queue.contains(&hash) {
                self.queue.push_front(hash);
            }
        }
    }

    /// The messages that may be sent now (unannounces first), each of at most
    /// [`MAX_ANNOUNCE_BATCH`] contents; what does not fit the budget stays queued.
    pub(crate) fn ready(&mut self, now: Instant) -> Vec<Change> {
        self.refill(now);
        let mut changes = Vec::new();
        while !self.unqueue.is_empty() && self.tokens >= 1.0 {
            let n = self.unqueue.len().min(MAX_ANNOUNCE_BATCH);
            changes.push(Change::Unannounce(self.unqueue.drain(..n).collect()));
            self.tokens -= 1.0;
        }
        while !self.queue.is_empty() && self.tokens >= 1.0 {
            let n = self.queue.len().min(MAX_ANNOUNCE_BATCH);
            changes.push(Change::Announce(self.queue.drain(..n).collect()));
            self.tokens -= 1.0;
        }
        changes
    }

    /// When the next message may go out, if anything waits.
    pub(crate) fn next_send(&self) -> Option<Instant> {
        if self.queue.is_empty() && self.unqueue.is_empty() {
            return None;
        }
        let missing = (1.0 - self.tokens).max(0.0);
        Some(self.at + Duration::from_secs_f64(missing / INDEX_CHANGES_PER_SEC))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * INDEX_CHANGES_PER_SEC).min(f64::from(INDEX_CHANGES_BURST));
        self.at = self.at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u32) -> InfoHash {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        InfoHash::from_bytes(bytes)
    }

    #[test]
    fn shares_one_by_one_stay_inside_the_servers_budget() {
        // 300 files shared one after another, 1 ms apart (hashing tiny files): every message
        // the pacer lets out, checked against the server's bucket.
        let start = Instant::now();
        let mut pacer = AnnouncePacer::new(start);
        let mut server_tokens = f64::from(INDEX_CHANGES_BURST);
        let mut server_at = start;
        let mut announced = Vec::new();
        let mut send = |now: Instant, changes: Vec<Change>, announced: &mut Vec<_>| {
            for change in changes {
                let Change::Announce(batch) = change else {
                    panic!("nothing was unshared");
                };
                server_tokens = (server_tokens
                    + now.duration_since(server_at).as_secs_f64() * INDEX_CHANGES_PER_SEC)
                    .min(f64::from(INDEX_CHANGES_BURST));
                server_at = now;
                assert!(server_tokens >= 1.0, "the server would refuse this batch");
                server_tokens -= 1.0;
                assert!(batch.len() <= MAX_ANNOUNCE_BATCH);
                announced.extend(batch);
            }
        };
        let mut now = start;
        for n in 0..300 {
            now += Duration::from_millis(1);
            pacer.push([hash(n)]);
            let batches = pacer.ready(now);
            send(now, batches, &mut announced);
        }
        while let Some(at) = pacer.next_send() {
            assert!(at >= now, "the next send is not in the past");
            now = at;
            let batches = pacer.ready(now);
            assert!(!batches.is_empty(), "a wake-up sends something");
            send(now, batches, &mut announced);
        }
        let expected: Vec<InfoHash> = (0..300).map(hash).collect();
        assert_eq!(announced, expected, "each once, in order");
        // The first 64 go at once; the other 236 need 2 batches of at most 32 per wake-up
        // rather than 236 messages: all are out within a second of the last share.
        assert!(
            now - start < Duration::from_millis(1300),
            "{:?}",
            now - start
        );
    }

    #[test]
    fn a_refused_batch_goes_back_to_the_front_and_waits() {
        let start = Instant::now();
        let mut pacer = AnnouncePacer::new(start);
        pacer.push((0..40).map(hash));
        let mut batches = pacer.ready(start);
        assert_eq!(batches.len(), 2);
        pacer.push([hash(99)]);
        let Some(Change::Announce(second)) = batches.pop() else {
            panic!("two announces");
        };
        pacer.refused(start, second.clone());
        assert!(
            pacer.ready(start).is_empty(),
            "no budget right after a refusal"
        );
        let at = pacer.next_send().expect("something waits");
        assert_eq!(at - start, Duration::from_millis(125));
        let again = pacer.ready(at);
        let mut expected = second;
        expected.push(hash(99));
        assert_eq!(again, vec![Change::Announce(expected)]);
        assert_eq!(pacer.next_send(), None);
    }

    #[test]
    fn unshares_are_paced_batched_and_skip_what_was_never_sent() {
        let start = Instant::now();
        let mut pacer = AnnouncePacer::new(start);
        // 100 shares announced (4 messages), then all unshared, plus one still queued.
        pacer.push((0..100).map(hash));
        assert_eq!(pacer.ready(start).len(), 4);
        pacer.push([hash(500)]);
        for n in (0..100).chain([500]) {
            pacer.unannounce(hash(n));
        }
        let changes = pacer.ready(start);
        let told: Vec<InfoHash> = changes
            .iter()
            .flat_map(|c| match c {
                Change::Unannounce(h) => h.clone(),
                Change::Announce(h) => panic!("announced {h:?} after its unshare"),
            })
            .collect();
        assert_eq!(
            told,
            (0..100).map(hash).collect::<Vec<_>>(),
            "500 was never sent"
        );
        assert_eq!(changes.len(), 4, "batches of 32");
        assert_eq!(pacer.next_send(), None);
    }

    #[test]
    fn a_spent_budget_holds_unannounces_too() {
        let start = Instant::now();
        let mut pacer = AnnouncePacer::new(start);
        // 64 shares one at a time: 64 messages, the whole burst.
        for n in 0..INDEX_CHANGES_BURST {
            pacer.push([hash(n)]);
            assert_eq!(pacer.ready(start).len(), 1);
        }
        pacer.unannounce(hash(1));
        assert!(pacer.ready(start).is_empty(), "no budget left");
        let at = pacer.next_send().expect("queued");
        assert_eq!(pacer.ready(at), vec![Change::Unannounce(vec![hash(1)])]);
        pacer.reset(at);
        assert_eq!(pacer.next_send(), None);
    }
}
