//! Connected nodes and the relay path: each node's bounded outbox of relayed signals.
//!
//! Architecture invariant: this is the only state a relayed `signal` touches, behind a mutex
//! held for microseconds; the file index has a lock of its own ([`crate::index`]). Queues are
//! counted in messages and in bytes, per client and over the whole server, and a relay that
//! does not fit is refused to its *sender* (`peer_busy`): nothing anyone sends can get another
//! node disconnected. Server notices (`index_changed`) are not queued at all: each connection
//! reads the latest revision from a watch channel, so they are coalesced per receiver and
//! always fit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_protocol::NodeId;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

/// Byte counters of queued relayed frames: one per client, and the server's total.
#[derive(Debug, Default)]
pub(crate) struct QueuedBytes {
    count: AtomicUsize,
}

impl QueuedBytes {
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n`, never below zero.
    pub(crate) fn sub(&self, n: usize) {
        let _ = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(n))
            });
    }
}

/// How the relay reaches one connection task.
pub(crate) struct Outbox {
    /// Bounded queue of relayed frames to write to the client.
    tx: mpsc::Sender<Message>,
    /// Bytes of frames in `tx` not yet taken by the connection task.
    queued: Arc<QueuedBytes>,
}

impl Outbox {
    pub(crate) fn new(tx: mpsc::Sender<Message>, queued: Arc<QueuedBytes>) -> Self {
        Self { tx, queued }
    }
}

/// Why a `signal` could not be relayed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RelayError {
    /// The target is not connected.
    UnknownPeer,
    /// The target's queue is full (messages or bytes). The sender is told; the target is not
    /// punished, or any node could get any other dropped by flooding it with signals.
    Busy,
    /// The server holds its limit of queued bytes over all clients.
    ServerBusy,
}

/// Bounds on what the relay may queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    /// Bytes queued for one client.
    pub(crate) per_client_bytes: usize,
    /// Bytes queued over all clients.
    pub(crate) total_bytes: usize,
}

/// Every node that said hello, by id.
pub(crate) struct Registry {
    peers: HashMap<NodeId, Outbox>,
    relayed_total: u64,
    limits: QueueLimits,
    /// Bytes queued over all clients.
    total: Arc<QueuedBytes>,
}

impl Registry {
    pub(crate) fn new(limits: QueueLimits, total: Arc<QueuedBytes>) -> Self {
        Self {
            peers: HashMap::new(),
            relayed_total: 0,
            limits,
            total,
        }
    }

    pub(crate) fn node_count(&self) -> usize {
        self.peers.len()
    }

    pub(crate) fn relayed_total(&self) -> u64 {
        self.relayed_total
    }

    pub(crate) fn register(&mut self, node: NodeId, outbox: Outbox) {
        self.peers.insert(node, outbox);
    }

    /// Removes a node; what was still queued for it no longer counts toward the total.
    pub(crate) fn unregister(&mut self, node: NodeId) {
        if let Some(outbox) = self.peers.remove(&node) {
            self.total.sub(outbox.queued.get());
        }
    }

    /// Queues an already serialised `signal` frame for `to`.
    ///
    /// # Errors
    /// [`RelayError::UnknownPeer`] when `to` is not connected, [`RelayError::Busy`] when its
    /// queue holds its limit of messages or bytes, [`RelayError::ServerBusy`] when the
    /// server's total is reached.
    pub(crate) fn relay(&mut self, to: NodeId, frame: Message) -> Result<(), RelayError> {
        let outbox = self.peers.get(&to).ok_or(RelayError::UnknownPeer)?;
        let len = frame.len();
        if outbox.queued.get() + len > self.limits.per_client_bytes {
            debug!(peer = %to.short(), "relay target not keeping up (bytes); signal dropped");
            return Err(RelayError::Busy);
        }
        if self.total.get() + len > self.limits.total_bytes {
            debug!("server queue total reached; signal dropped");
            return Err(RelayError::ServerBusy);
        }
        match outbox.tx.try_send(frame) {
            Ok(()) => {
                outbox.queued.add(len);
                self.total.add(len);
                self.relayed_total += 1;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!(peer = %to.short(), "relay target not keeping up; signal dropped");
                Err(RelayError::Busy)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(RelayError::UnknownPeer),
        }
    }

    /// Forgets every node (server shutdown).
    pub(crate) fn clear(&mut self) {
        for (_, outbox) in self.peers.drain() {
            self.total.sub(outbox.queued.get());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(per_client: usize, total: usize) -> (Registry, Arc<QueuedBytes>) {
        let total_bytes = Arc::new(QueuedBytes::default());
        let r = Registry::new(
            QueueLimits {
                per_client_bytes: per_client,
                total_bytes: total,
            },
            total_bytes.clone(),
        );
        (r, total_bytes)
    }

    fn outbox(depth: usize) -> (Outbox, mpsc::Receiver<Message>, Arc<QueuedBytes>) {
        let (tx, rx) = mpsc::channel(depth);
        let queued = Arc::new(QueuedBytes::default());
        (Outbox::new(tx, queued.clone()), rx, queued)
    }

    #[test]
    fn a_full_queue_refuses_relays_without_touching_the_target() {
        let (mut r, _) = registry(1 << 20, 1 << 30);
        let a = NodeId::random();
        let (o, _rx, _) = outbox(4);
        r.register(a, o);
        for _ in 0..4 {
            assert!(r.relay(a, Message::text("x")).is_ok());
        }
        assert_eq!(r.relayed_total(), 4);
        assert_eq!(r.relay(a, Message::text("x")), Err(RelayError::Busy));
        assert_eq!(r.relayed_total(), 4, "the fifth did not fit");
        assert_eq!(r.node_count(), 1, "the target stays");
    }

    /// Issue 8, items 8 and 11: queues are bounded in bytes, per client and in total.
    #[test]
    fn queues_are_bounded_in_bytes_per_client_and_in_total() {
        let (mut r, total) = registry(100, 150);
        let (a, b) = (NodeId::random(), NodeId::random());
        let (oa, mut rx_a, qa) = outbox(64);
        let (ob, _rx_b, _) = outbox(64);
        r.register(a, oa);
        r.register(b, ob);
        let sixty = || Message::text("x".repeat(60));
        assert!(r.relay(a, sixty()).is_ok());
        assert_eq!(
            r.relay(a, sixty()),
            Err(RelayError::Busy),
            "a holds 60 of 100"
        );
        assert!(r.relay(b, sixty()).is_ok());
        assert_eq!(total.get(), 120);
        assert_eq!(
            r.relay(b, Message::text("x".repeat(35))),
            Err(RelayError::ServerBusy)
        );
        // The connection task takes a frame and gives its bytes back.
        let frame = rx_a.try_recv().expect("queued");
        qa.sub(frame.len());
        total.sub(frame.len());
        assert!(r.relay(a, sixty()).is_ok());
        r.unregister(a);
        assert_eq!(total.get(), 60, "what a leaver had queued is released");
    }
}
