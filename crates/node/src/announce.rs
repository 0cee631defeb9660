//! Pacing of `announce` messages: sans-IO, time passed in.
//!
//! The signaling server lets one connection send [`INDEX_CHANGES_BURST`] index changes
//! (`announce`, `unannounce`) at once and [`INDEX_CHANGES_PER_SEC`] per second after that,
//! counting messages, not files (docs/protocol.md §2). A user who shares a folder of a few
//! hundred files makes one share per file; sent one message each, the 65th would be refused.
//! The pacer keeps the node inside the server's budget instead: shares wait in a queue while
//! no message may be sent, and whatever has queued goes out together, in batches of at most
//! [`MAX_ANNOUNCE_BATCH`], when the budget allows the next message.

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
}

impl AnnouncePacer {
    /// A full budget at `now`, as the server grants a new connection.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            tokens: f64::from(INDEX_CHANGES_BURST),
            at: now,
            queue: VecDeque::new(),
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

    /// Drops `hash` from the queue (it was unshared before it was announced).
    pub(crate) fn forget(&mut self, hash: &InfoHash) {
        self.queue.retain(|h| h != hash);
    }

    /// Counts a message sent outside the queue (`unannounce`).
    pub(crate) fn spend(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
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

    /// The batches that may be sent now, each at most [`MAX_ANNOUNCE_BATCH`] shares; what
    /// does not fit the budget stays queued.
    pub(crate) fn ready(&mut self, now: Instant) -> Vec<Vec<InfoHash>> {
        self.refill(now);
        let mut batches = Vec::new();
        while !self.queue.is_empty() && self.tokens >= 1.0 {
            let n = self.queue.len().min(MAX_ANNOUNCE_BATCH);
            batches.push(self.queue.drain(..n).collect());
            self.tokens -= 1.0;
        }
        batches
    }

    /// When the next batch may go out, if any share waits.
    pub(crate) fn next_send(&self) -> Option<Instant> {
        if self.queue.is_empty() {
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
        let mut send = |now: Instant, batches: Vec<Vec<InfoHash>>, announced: &mut Vec<_>| {
            for batch in batches {
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
        let second = batches.pop().unwrap_or_default();
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
        assert_eq!(again, vec![expected]);
        assert_eq!(pacer.next_send(), None);
    }

    #[test]
    fn unannounce_spends_and_forget_unqueues() {
        let start = Instant::now();
        let mut pacer = AnnouncePacer::new(start);
        for _ in 0..INDEX_CHANGES_BURST {
            pacer.spend(start);
        }
        pacer.push([hash(1), hash(2), hash(1)]);
        pacer.forget(&hash(2));
        assert!(pacer.ready(start).is_empty());
        let at = pacer.next_send().expect("queued");
        assert_eq!(pacer.ready(at), vec![vec![hash(1)]]);
        pacer.reset(at);
        assert_eq!(pacer.next_send(), None);
    }
}
