//! Connected nodes and the in-memory file index (seed 004: `nodes`, `files`, `node_files`).
//!
//! Everything here is synchronous and runs under one mutex held for microseconds; sends to
//! clients are `try_send` on bounded queues, never awaited under the lock.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use shoal_protocol::{
    Category, ErrorCode, FileAnnouncement, IndexedFile, InfoHash, MAX_LIST_RESULTS,
    MAX_SEARCH_RESULTS, NodeId, ServerToClient,
};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

/// How the registry reaches one connection task.
pub(crate) struct Peer {
    /// Bounded queue of frames to write to the client.
    pub(crate) tx: mpsc::Sender<Message>,
    /// Tells the connection task to drop its client (its queue overflowed).
    pub(crate) kick: Arc<Notify>,
    /// Info hashes this node announced.
    files: HashSet<InfoHash>,
}

impl Peer {
    pub(crate) fn new(tx: mpsc::Sender<Message>, kick: Arc<Notify>) -> Self {
        Self {
            tx,
            kick,
            files: HashSet::new(),
        }
    }

    /// Queues a frame. Returns whether it was queued.
    fn try_queue(&self, message: Message) -> Result<(), mpsc::error::TrySendError<Message>> {
        self.tx.try_send(message)
    }

    /// Queues a server-made frame; a full queue kicks the client (it stopped reading: the
    /// server sends it at most a few notices a second).
    fn offer(&self, message: Message) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.try_queue(message) {
            self.kick.notify_one();
        }
    }
}

struct Entry {
    name: String,
    /// `name` in lowercase, for search and ordering.
    name_lower: String,
    size: u64,
    mime: String,
    category: Category,
    /// Oldest announcement first.
    holders: Vec<NodeId>,
}

impl Entry {
    fn to_indexed(&self, info_hash: InfoHash) -> IndexedFile {
        IndexedFile {
            info_hash,
            name: self.name.clone(),
            size: self.size,
            mime: self.mime.clone(),
            category: self.category,
            holders: self.holders.clone(),
        }
    }
}

/// Why a `signal` could not be relayed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RelayError {
    /// The target is not connected.
    UnknownPeer,
    /// The target's queue is full. The sender is told; the target is not punished, or any
    /// node could get any other dropped by flooding it with signals.
    Busy,
}

pub(crate) struct Registry {
    peers: HashMap<NodeId, Peer>,
    files: HashMap<InfoHash, Entry>,
    /// Index entries in name order, for `list`.
    by_name: BTreeSet<(String, InfoHash)>,
    holders: u64,
    relayed_total: u64,
    revision: u64,
    max_files_per_node: usize,
}

impl Registry {
    pub(crate) fn new(max_files_per_node: usize) -> Self {
        Self {
            peers: HashMap::new(),
            files: HashMap::new(),
            by_name: BTreeSet::new(),
            holders: 0,
            relayed_total: 0,
            revision: 0,
            max_files_per_node,
        }
    }

    pub(crate) fn node_count(&self) -> usize {
        self.peers.len()
    }

    pub(crate) fn file_count(&self) -> usize {
        self.files.len()
    }

    pub(crate) fn holder_count(&self) -> u64 {
        self.holders
    }

    pub(crate) fn relayed_total(&self) -> u64 {
        self.relayed_total
    }

    pub(crate) fn register(&mut self, node: NodeId, peer: Peer) {
        self.peers.insert(node, peer);
    }

    /// Removes a node and its files. Returns whether the index changed.
    pub(crate) fn unregister(&mut self, node: NodeId) -> bool {
        let Some(peer) = self.peers.remove(&node) else {
            return false;
        };
        let changed = !peer.files.is_empty();
        for info_hash in peer.files {
            self.drop_holder(info_hash, node);
        }
        if changed {
            self.revision += 1;
        }
        changed
    }

    /// Adds `files` under `node`, all or nothing.
    ///
    /// # Errors
    /// `limit_exceeded` past the per-node cap, `conflict` for a known info hash with another
    /// size.
    pub(crate) fn announce(
        &mut self,
        node: NodeId,
        files: Vec<FileAnnouncement>,
    ) -> Result<Vec<InfoHash>, (ErrorCode, String)> {
        let Some(peer) = self.peers.get(&node) else {
            return Err((ErrorCode::HelloRequired, "node is not registered".into()));
        };
        let new: HashSet<InfoHash> = files
            .iter()
            .map(|f| f.info_hash)
            .filter(|h| !peer.files.contains(h))
            .collect();
        if peer.files.len() + new.len() > self.max_files_per_node {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "a node may hold at most {} files in the index; this one has {} and announced {} more",
                    self.max_files_per_node,
                    peer.files.len(),
                    new.len()
                ),
            ));
        }
        for file in &files {
            if let Some(entry) = self.files.get(&file.info_hash)
                && entry.size != file.size
            {
                return Err((
                    ErrorCode::Conflict,
                    format!(
                        "info hash {} is indexed with size {} bytes, not {}",
                        file.info_hash, entry.size, file.size
                    ),
                ));
            }
        }
        let mut accepted = Vec::with_capacity(files.len());
        for file in files {
            accepted.push(file.info_hash);
            if !new.contains(&file.info_hash) {
                continue;
            }
            let entry = self.files.entry(file.info_hash).or_insert_with(|| {
                let name_lower = file.name.to_lowercase();
                self.by_name.insert((name_lower.clone(), file.info_hash));
                Entry {
                    name: file.name,
                    name_lower,
                    size: file.size,
                    mime: file.mime,
                    category: file.category,
                    holders: Vec::new(),
                }
            });
            if !entry.holders.contains(&node) {
                entry.holders.push(node);
                self.holders += 1;
            }
        }
        if let Some(peer) = self.peers.get_mut(&node) {
            peer.files.extend(new.iter().copied());
        }
        if !new.is_empty() {
            self.revision += 1;
        }
        Ok(accepted)
    }

    /// Removes `info_hashes` from `node`'s files. Returns whether the index changed.
    pub(crate) fn unannounce(&mut self, node: NodeId, info_hashes: &[InfoHash]) -> bool {
        let Some(peer) = self.peers.get_mut(&node) else {
            return false;
        };
        let removed: Vec<InfoHash> = info_hashes
            .iter()
            .filter(|h| peer.files.remove(h))
            .copied()
            .collect();
        for info_hash in &removed {
            self.drop_holder(*info_hash, node);
        }
        if !removed.is_empty() {
            self.revision += 1;
        }
        !removed.is_empty()
    }

    fn drop_holder(&mut self, info_hash: InfoHash, node: NodeId) {
        let Some(entry) = self.files.get_mut(&info_hash) else {
            return;
        };
        if let Some(pos) = entry.holders.iter().position(|h| *h == node) {
            entry.holders.remove(pos);
            self.holders -= 1;
        }
        if entry.holders.is_empty() {
            let key = (std::mem::take(&mut entry.name_lower), info_hash);
            self.by_name.remove(&key);
            self.files.remove(&info_hash);
        }
    }

    /// Entries of `category` (or all) in name order: at most [`MAX_LIST_RESULTS`], and the
    /// number that matched.
    pub(crate) fn list(&self, category: Option<Category>) -> (Vec<IndexedFile>, u64) {
        self.collect(MAX_LIST_RESULTS, |entry| {
            category.is_none_or(|c| c == entry.category)
        })
    }

    /// Entries whose lowercase name contains every word of `query` (and of `category`, if
    /// given), in name order: at most [`MAX_SEARCH_RESULTS`], and the number that matched.
    pub(crate) fn search(
        &self,
        query: &str,
        category: Option<Category>,
    ) -> (Vec<IndexedFile>, u64) {
        let words: Vec<String> = query.split_whitespace().map(str::to_lowercase).collect();
        self.collect(MAX_SEARCH_RESULTS, |entry| {
            category.is_none_or(|c| c == entry.category)
                && words.iter().all(|w| entry.name_lower.contains(w.as_str()))
        })
    }

    fn collect(&self, limit: usize, matches: impl Fn(&Entry) -> bool) -> (Vec<IndexedFile>, u64) {
        let mut out = Vec::new();
        let mut total = 0u64;
        for (_, info_hash) in &self.by_name {
            let Some(entry) = self.files.get(info_hash) else {
                continue;
            };
            if matches(entry) {
                total += 1;
                if out.len() < limit {
                    out.push(entry.to_indexed(*info_hash));
                }
            }
        }
        (out, total)
    }

    pub(crate) fn lookup(&self, info_hash: InfoHash) -> Option<IndexedFile> {
        self.files.get(&info_hash).map(|e| e.to_indexed(info_hash))
    }

    /// Queues an already serialised `signal` frame for `to`.
    ///
    /// # Errors
    /// [`RelayError::UnknownPeer`] when `to` is not connected.
    pub(crate) fn relay(&mut self, to: NodeId, frame: Message) -> Result<(), RelayError> {
        let peer = self.peers.get(&to).ok_or(RelayError::UnknownPeer)?;
        match peer.try_queue(frame) {
            Ok(()) => {
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

    /// Queues `index_changed` with the current revision for every node.
    pub(crate) fn broadcast_index_changed(&self) {
        let notice = ServerToClient::IndexChanged {
            revision: self.revision,
        };
        let Ok(text) = serde_json::to_string(&notice) else {
            return;
        };
        let frame = Message::text(text);
        for peer in self.peers.values() {
            peer.offer(frame.clone());
        }
    }

    /// Forgets everything (server shutdown: seed 004, "服务器关闭时自动清空").
    pub(crate) fn clear(&mut self) {
        self.peers.clear();
        self.files.clear();
        self.by_name.clear();
        self.holders = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> (Peer, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(4);
        (Peer::new(tx, Arc::new(Notify::new())), rx)
    }

    fn file(n: u8, name: &str, category: Category) -> FileAnnouncement {
        FileAnnouncement {
            info_hash: InfoHash::from_bytes([n; 32]),
            name: name.into(),
            size: 100 + u64::from(n),
            mime: "video/mp4".into(),
            category,
        }
    }

    #[test]
    fn holders_come_and_go_with_their_nodes() {
        let mut r = Registry::new(10);
        let (a, b) = (NodeId::random(), NodeId::random());
        r.register(a, peer().0);
        r.register(b, peer().0);
        r.announce(a, vec![file(1, "Holiday.mp4", Category::Video)])
            .map_err(|e| e.1)
            .expect("announce");
        r.announce(b, vec![file(1, "other name.mp4", Category::Video)])
            .map_err(|e| e.1)
            .expect("announce");
        let found = r.lookup(InfoHash::from_bytes([1; 32])).expect("indexed");
        assert_eq!(found.holders, vec![a, b]);
        assert_eq!(found.name, "Holiday.mp4", "first name is kept");
        assert_eq!(r.holder_count(), 2);
        assert!(r.unregister(a));
        assert_eq!(
            r.lookup(InfoHash::from_bytes([1; 32])).map(|f| f.holders),
            Some(vec![b])
        );
        assert!(r.unannounce(b, &[InfoHash::from_bytes([1; 32])]));
        assert_eq!(r.file_count(), 0);
        assert_eq!(r.holder_count(), 0);
        assert!(r.list(None).0.is_empty());
    }

    #[test]
    fn search_needs_every_word_and_ignores_case() {
        let mut r = Registry::new(10);
        let a = NodeId::random();
        r.register(a, peer().0);
        r.announce(
            a,
            vec![
                file(1, "Summer Holiday.MP4", Category::Video),
                file(2, "holiday song.flac", Category::Audio),
                file(3, "winter.jpg", Category::Image),
            ],
        )
        .map_err(|e| e.1)
        .expect("announce");
        let names =
            |v: (Vec<IndexedFile>, u64)| v.0.into_iter().map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(
            names(r.search("HOLIDAY", None)),
            vec!["holiday song.flac", "Summer Holiday.MP4"]
        );
        assert_eq!(
            names(r.search("holiday mp4", None)),
            vec!["Summer Holiday.MP4"]
        );
        assert_eq!(
            names(r.search("holiday", Some(Category::Audio))),
            vec!["holiday song.flac"]
        );
        assert_eq!(names(r.list(Some(Category::Image))), vec!["winter.jpg"]);
    }

    #[test]
    fn limits_and_conflicts_refuse_the_whole_message() {
        let mut r = Registry::new(2);
        let a = NodeId::random();
        r.register(a, peer().0);
        let three = vec![
            file(1, "a", Category::Other),
            file(2, "b", Category::Other),
            file(3, "c", Category::Other),
        ];
        assert_eq!(
            r.announce(a, three).map_err(|e| e.0),
            Err(ErrorCode::LimitExceeded)
        );
        assert_eq!(r.file_count(), 0);
        r.announce(a, vec![file(1, "a", Category::Other)])
            .map_err(|e| e.1)
            .expect("announce");
        let mut liar = file(1, "a", Category::Other);
        liar.size = 5;
        let b = NodeId::random();
        r.register(b, peer().0);
        assert_eq!(
            r.announce(b, vec![liar]).map_err(|e| e.0),
            Err(ErrorCode::Conflict)
        );
    }

    #[test]
    fn a_full_queue_refuses_relays_but_kicks_only_on_notices() {
        let mut r = Registry::new(2);
        let a = NodeId::random();
        let (p, _rx) = peer();
        let kick = p.kick.clone();
        r.register(a, p);
        for _ in 0..4 {
            assert!(r.relay(a, Message::text("x")).is_ok());
        }
        assert_eq!(r.relayed_total(), 4);
        assert_eq!(r.relay(a, Message::text("x")), Err(RelayError::Busy));
        assert_eq!(r.relayed_total(), 4, "the fifth did not fit");
        let kicked = kick.notified();
        tokio::pin!(kicked);
        assert!(
            futures_util::FutureExt::now_or_never(kicked.as_mut()).is_none(),
            "a sender cannot get the target dropped"
        );
        // A server notice that does not fit means the client stopped reading.
        r.broadcast_index_changed();
        assert!(
            futures_util::FutureExt::now_or_never(kicked).is_some(),
            "kick permit is stored"
        );
    }
}
