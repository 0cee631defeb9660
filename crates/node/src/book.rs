//! Where every download of a node stands, for front ends to ask ([`crate::NodeHandle::transfers`],
//! [`crate::NodeHandle::transfer`]) or follow ([`crate::NodeHandle::watch_transfer`]) instead
//! of keeping their own copy (issue 9, item 2).
//!
//! Each download's swarm task holds the sending side of one `tokio::sync::watch` channel and
//! folds every event it tells about the download into the status ([`TransferStatus::apply`])
//! *before* it sends the event: a front end that hears `Completed` and asks sees the
//! download completed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::actor::lock;
use crate::events::{TransferId, TransferPhase, TransferStatus};

/// Ended downloads kept for asking, the oldest forgotten first.
const KEPT_ENDED: usize = 256;

/// Every download of one node, running or ended (the latest [`KEPT_ENDED`] ended ones, until
/// forgotten). Shared by the node's handles and its actor.
#[derive(Clone, Default)]
pub(crate) struct TransferBook(Arc<Mutex<BTreeMap<TransferId, watch::Sender<TransferStatus>>>>);

impl TransferBook {
    /// Adds a download that starts now; its swarm task writes through the returned sender.
    pub(crate) fn insert(&self, status: TransferStatus) -> watch::Sender<TransferStatus> {
        let transfer = status.transfer();
        let (tx, _) = watch::channel(status);
        let mut book = lock(&self.0);
        book.insert(transfer, tx.clone());
        let ended: Vec<TransferId> = book
            .iter()
            .filter(|(_, s)| !s.borrow().is_running())
            .map(|(t, _)| *t)
            .collect();
        for t in ended.iter().take(ended.len().saturating_sub(KEPT_ENDED)) {
            book.remove(t);
        }
        tx
    }

    /// Every download, by id (the order they started in).
    pub(crate) fn list(&self) -> Vec<TransferStatus> {
        lock(&self.0).values().map(|s| s.borrow().clone()).collect()
    }

    /// One download now.
    pub(crate) fn get(&self, transfer: TransferId) -> Option<TransferStatus> {
        lock(&self.0).get(&transfer).map(|s| s.borrow().clone())
    }

    /// A receiver that sees each change of one download.
    pub(crate) fn watch(&self, transfer: TransferId) -> Option<watch::Receiver<TransferStatus>> {
        lock(&self.0).get(&transfer).map(watch::Sender::subscribe)
    }

    /// Forgets an ended download; a running one stays. True when it was forgotten.
    pub(crate) fn forget(&self, transfer: TransferId) -> bool {
        let mut book = lock(&self.0);
        let ended = book
            .get(&transfer)
            .is_some_and(|s| !matches!(s.borrow().phase, TransferPhase::Running));
        if ended {
            book.remove(&transfer);
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{DownloadProgress, FailureCause};
    use shoal_protocol::InfoHash;

    fn status(n: u64) -> TransferStatus {
        TransferStatus::new(
            DownloadProgress {
                transfer: TransferId(n),
                info_hash: InfoHash::from_bytes([n as u8; 32]),
                name: format!("{n}.mp4"),
                bytes_done: 0,
                len_bytes: 100,
                rate_bytes_per_sec: 0.0,
                peers: 0,
                sent_bytes: 0,
                upload_rate_bytes_per_sec: 0.0,
                peers_served: 0,
            },
            "/tmp".into(),
        )
    }

    #[test]
    fn keeps_running_downloads_and_the_latest_ended_ones() {
        let book = TransferBook::default();
        let running = book.insert(status(0));
        for n in 1..=(KEPT_ENDED as u64 + 5) {
            let tx = book.insert(status(n));
            tx.send_modify(|s| {
                s.phase = TransferPhase::Failed {
                    cause: FailureCause::Cancelled,
                    reason: "cancelled".into(),
                }
            });
        }
        // The next insert prunes.
        let _last = book.insert(status(1000));
        let list = book.list();
        assert_eq!(
            list.len(),
            KEPT_ENDED + 2,
            "running, 256 ended, the new one"
        );
        assert_eq!(
            list[0].transfer(),
            TransferId(0),
            "a running one is never dropped"
        );
        assert_eq!(
            list[1].transfer(),
            TransferId(6),
            "the oldest ended ones went"
        );
        assert!(!book.forget(TransferId(0)), "running: kept");
        assert!(book.forget(TransferId(6)));
        assert!(book.get(TransferId(6)).is_none());
        drop(running);
        assert!(
            book.get(TransferId(0)).is_some(),
            "the book holds its own sender"
        );
    }
}
