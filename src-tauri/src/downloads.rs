//! The app's downloads: what the app keeps of each across node restarts and app runs (its
//! content, its folder, and where the app stands with it: running in the node, waiting for
//! a sharer, done, failed or cancelled). The figures of a download (bytes, rates, peers and
//! how each is reached) are the node's ([`NodeHandle::transfer`]): a card is built from both
//! whenever it is shown, and nothing here copies them (issue 9, item 2).

use std::path::PathBuf;

use shoal_node::{NodeHandle, TransferId, TransferStatus};

use crate::dto::{PeerInfo, Problem, Transfer, TransferState};
use crate::library::RememberedTransfer;

/// One download of the app (the app's id outlives node restarts and app runs).
#[derive(Debug, Clone)]
pub(crate) struct Download {
    /// The app's id.
    pub id: u64,
    /// Content id, hex.
    pub info_hash: String,
    /// File name, as the index or the node said.
    pub name: String,
    /// Length in bytes, as last known.
    pub len_bytes: u64,
    /// The folder it downloads into.
    pub out_dir: PathBuf,
    /// Where the app stands with it.
    pub state: TransferState,
    /// Why it waits or stopped.
    pub problem: Option<Problem>,
    /// The finished file.
    pub path: Option<PathBuf>,
    /// Verified bytes when a run of it last ended: what its card says while no run of the
    /// current node has it (an earlier node or app run, or a run the node forgot).
    pub saved_bytes: u64,
    /// Bytes sent to other viewers, and nodes served a whole piece, by its last ended run.
    pub saved_sent: (u64, usize),
    /// Its latest run on the current node.
    pub run: Option<TransferId>,
}

impl Download {
    /// A download the node just started (or answered for).
    pub(crate) fn started(id: u64, status: &TransferStatus) -> Self {
        let p = &status.progress;
        Self {
            id,
            info_hash: p.info_hash.to_string(),
            name: p.name.clone(),
            len_bytes: p.len_bytes,
            out_dir: status.out_dir.clone(),
            state: TransferState::Running,
            problem: None,
            path: None,
            saved_bytes: 0,
            saved_sent: (0, 0),
            run: Some(status.transfer()),
        }
    }

    /// As remembered from an earlier app run (not running on any node).
    pub(crate) fn from_remembered(r: &RememberedTransfer) -> Self {
        Self {
            id: r.id,
            info_hash: r.info_hash.clone(),
            name: r.name.clone(),
            len_bytes: r.len_bytes,
            out_dir: r.out_dir.clone(),
            state: r.state,
            problem: r
                .problem
                .clone()
                .or_else(|| r.error.clone().map(|message| Problem::Other { message })),
            path: r.path.clone(),
            saved_bytes: r.bytes_done,
            saved_sent: (0, 0),
            run: None,
        }
    }

    /// A run of the current node has it now: running, or started again.
    pub(crate) fn adopt(&mut self, status: &TransferStatus) {
        let p = &status.progress;
        if p.len_bytes > 0 {
            self.len_bytes = p.len_bytes;
        }
        self.out_dir = status.out_dir.clone();
        self.state = TransferState::Running;
        self.problem = None;
        self.run = Some(status.transfer());
    }

    /// The node that ran it is going away: keeps what the run reached, and forgets the run.
    pub(crate) fn leave_node(&mut self, node: &NodeHandle) {
        self.keep_figures(node);
        self.run = None;
    }

    /// Keeps what its run reached (bytes, length, bytes sent), for when the node no longer
    /// has the run: a run ended, a node restart, the node's book forgetting old runs.
    pub(crate) fn keep_figures(&mut self, node: &NodeHandle) {
        if let Some(status) = self.run.and_then(|r| node.transfer(r).ok()) {
            let p = &status.progress;
            self.saved_bytes = p.bytes_done;
            self.saved_sent = (p.sent_bytes, p.peers_served);
            if p.len_bytes > 0 {
                self.len_bytes = p.len_bytes;
            }
        }
    }

    /// Its card: the app's state, the node's figures.
    pub(crate) fn card(&self, node: &NodeHandle) -> Transfer {
        let mut t = Transfer::new(
            self.id,
            self.info_hash.clone(),
            self.name.clone(),
            self.len_bytes,
        );
        t.state = self.state;
        t.problem = self.problem.clone();
        t.path = self.path.clone();
        t.bytes_done = self.saved_bytes;
        (t.sent_bytes, t.peers_served) = self.saved_sent;
        if let Some(status) = self.run.and_then(|r| node.transfer(r).ok()) {
            let p = &status.progress;
            t.bytes_done = p.bytes_done;
            if p.len_bytes > 0 {
                t.len_bytes = p.len_bytes;
            }
            t.sent_bytes = p.sent_bytes;
            t.peers_served = p.peers_served;
            if self.state == TransferState::Running && status.is_running() {
                t.rate_bytes_per_sec = p.rate_bytes_per_sec;
                t.upload_rate_bytes_per_sec = p.upload_rate_bytes_per_sec;
                t.eta_secs = (p.rate_bytes_per_sec > 1.0).then(|| {
                    (p.len_bytes.saturating_sub(p.bytes_done) as f64 / p.rate_bytes_per_sec).ceil()
                        as u64
                });
                t.peers = status
                    .peers
                    .iter()
                    .map(|l| PeerInfo {
                        peer: l.peer.short(),
                        candidate_type: l.candidate_type.to_string(),
                    })
                    .collect();
            }
        }
        if self.state == TransferState::Completed {
            t.bytes_done = t.len_bytes;
        }
        t
    }

    /// What `transfers.json` keeps of it.
    pub(crate) fn remembered(&self, node: &NodeHandle) -> RememberedTransfer {
        RememberedTransfer::new(&self.card(node), self.out_dir.clone())
    }

    /// Applies "resume downloads by themselves": off, a waiting download stops (failed,
    /// with Try again, saying why); on, a download it stopped waits again (and the app's
    /// `resume_waiting` starts it). True when it changed.
    pub(crate) fn hold_or_release(&mut self, resume: bool) -> bool {
        if !resume && self.state == TransferState::Waiting {
            self.state = TransferState::Failed;
            if self.problem != Some(Problem::SharerGone) {
                self.problem = Some(Problem::NotResumed);
            }
            return true;
        }
        if resume
            && self.state == TransferState::Failed
            && matches!(
                self.problem,
                Some(Problem::SharerGone | Problem::NotResumed)
            )
        {
            self.state = TransferState::Waiting;
            self.problem = Some(Problem::NoServer);
            return true;
        }
        false
    }
}
