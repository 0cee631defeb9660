//! What a node tells its front end.

use std::path::PathBuf;
use std::time::Duration;

use shoal_protocol::{Category, InfoHash, NodeId};
use shoal_rtc::CandidateType;

/// Names one download for the life of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u64);

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The connection to the signaling server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the WebSocket.
    Connecting {
        /// The server.
        url: String,
    },
    /// Connected; the server gave this node an id.
    Connected {
        /// The server.
        url: String,
        /// This node's id.
        node_id: NodeId,
    },
    /// Lost or refused; the node retries after `retry_in` (1 s doubling to 30 s).
    Disconnected {
        /// The server.
        url: String,
        /// Why, in words.
        reason: String,
        /// Time until the next attempt.
        retry_in: Duration,
    },
}

/// A file this node shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    /// Content id.
    pub info_hash: InfoHash,
    /// Display name (the file name).
    pub name: String,
    /// The original file.
    pub path: PathBuf,
    /// Length in bytes.
    pub size: u64,
    /// MIME type guessed from the extension.
    pub mime: String,
    /// Category badge.
    pub category: Category,
}

/// What happens in a room (docs/protocol.md §8).
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// The member list changed.
    Members {
        /// The room's code.
        room: String,
        /// The host; `None` while the host is reconnecting.
        host: Option<NodeId>,
        /// Every member, the host included.
        members: Vec<NodeId>,
    },
    /// A member said something. Clock pings to a room this node hosts are answered by the
    /// node itself and not reported.
    Message {
        /// The room's code.
        room: String,
        /// The sender, as the server stamped it.
        from: NodeId,
        /// What.
        body: shoal_protocol::RoomBody,
    },
    /// The room ended.
    Closed {
        /// The room's code.
        room: String,
        /// Why, in words.
        reason: String,
    },
    /// The signaling connection came back and the node joined the room again, under its
    /// new node id (a host with its host key, as the host): the room as the server has it.
    Rejoined {
        /// The room now: code, host, members, the host's last playback.
        room: shoal_protocol::RoomInfo,
        /// This node's id on the new connection.
        me: NodeId,
    },
    /// The server refused a room message (`not_host`, `unknown_room`, a bad number).
    Refused {
        /// Why, in words.
        reason: String,
    },
}

/// Progress of one download.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadProgress {
    /// The download.
    pub transfer: TransferId,
    /// Its content.
    pub info_hash: InfoHash,
    /// File name it will get.
    pub name: String,
    /// Bytes verified and written, including those found on resume.
    pub bytes_done: u64,
    /// File length in bytes (0 until the manifest is known, if the index did not say).
    pub len_bytes: u64,
    /// Receive rate over the last second, bytes per second.
    pub rate_bytes_per_sec: f64,
    /// Peers (nodes) with at least one open link; two connections to one node count once.
    pub peers: usize,
    /// Bytes sent to other viewers from the pieces already here (issue 10: viewers serve
    /// each other), since the download started.
    pub sent_bytes: u64,
    /// Send rate over the last second, bytes per second.
    pub upload_rate_bytes_per_sec: f64,
    /// Nodes that were sent at least one whole piece.
    pub peers_served: usize,
}

/// A node a download has an open link to, and how it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedPeer {
    /// The remote node.
    pub peer: NodeId,
    /// How the selected ICE candidate pair reaches it: host (direct), srflx (through NAT,
    /// via STUN) or relay (TURN).
    pub candidate_type: CandidateType,
}

/// Where a download is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferPhase {
    /// Fetching (or about to, or finishing the file).
    Running,
    /// The verified file is at `path`.
    Completed {
        /// The final file.
        path: PathBuf,
        /// Figures.
        summary: TransferSummary,
    },
    /// Failed or cancelled; the `.part` file stays for a resume.
    Failed {
        /// Why, for a front end to choose its words.
        cause: FailureCause,
        /// Why, in words.
        reason: String,
    },
    /// The node shut down while it ran; the `.part` file stays for a resume.
    Stopped,
}

/// What the engine knows of one download now: what [`crate::NodeHandle::transfer`] answers
/// and [`crate::NodeHandle::watch_transfer`] follows. It is the fold of the download's events
/// ([`NodeEvent::DownloadStarted`], [`NodeEvent::DownloadProgress`],
/// [`NodeEvent::PeerConnected`], [`NodeEvent::PeerBanned`], [`NodeEvent::Completed`],
/// [`NodeEvent::Failed`]), applied before each event is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferStatus {
    /// The latest figures (about four times a second while it runs).
    pub progress: DownloadProgress,
    /// The folder it downloads into.
    pub out_dir: PathBuf,
    /// Bytes found verified in a `.part` file when it started.
    pub resumed_bytes: u64,
    /// Nodes with an open link now, in the order they connected.
    pub peers: Vec<LinkedPeer>,
    /// Running, completed, failed or stopped.
    pub phase: TransferPhase,
}

impl TransferStatus {
    /// A download that starts now, with its first figures.
    pub(crate) fn new(progress: DownloadProgress, out_dir: PathBuf) -> Self {
        Self {
            progress,
            out_dir,
            resumed_bytes: 0,
            peers: Vec::new(),
            phase: TransferPhase::Running,
        }
    }

    /// The download's id.
    pub fn transfer(&self) -> TransferId {
        self.progress.transfer
    }

    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        matches!(self.phase, TransferPhase::Running)
    }

    /// Folds one event into the status; events of other downloads and others kinds change
    /// nothing.
    pub(crate) fn apply(&mut self, event: &NodeEvent) {
        // An ended download stays as it ended (a peer's connection type may be told late).
        if !self.is_running() {
            return;
        }
        let mine = |t: &TransferId| *t == self.progress.transfer;
        match event {
            NodeEvent::DownloadStarted {
                transfer,
                len_bytes,
                resumed_bytes,
                ..
            } if mine(transfer) => {
                self.resumed_bytes = *resumed_bytes;
                self.progress.bytes_done = *resumed_bytes;
                if self.progress.len_bytes == 0 {
                    self.progress.len_bytes = *len_bytes;
                }
            }
            NodeEvent::DownloadProgress(p) if mine(&p.transfer) => {
                self.progress = p.clone();
                if p.peers == 0 {
                    self.peers.clear();
                }
            }
            NodeEvent::PeerConnected {
                transfer: Some(transfer),
                peer,
                candidate_type,
                ..
            } if mine(transfer) && !self.peers.iter().any(|p| p.peer == *peer) => {
                self.peers.push(LinkedPeer {
                    peer: *peer,
                    candidate_type: *candidate_type,
                });
            }
            NodeEvent::PeerBanned { transfer, peer, .. } if mine(transfer) => {
                self.peers.retain(|p| p.peer != *peer);
            }
            NodeEvent::Completed {
                transfer,
                path,
                summary,
                ..
            } if mine(transfer) => {
                self.progress.bytes_done = self.progress.len_bytes;
                self.end(TransferPhase::Completed {
                    path: path.clone(),
                    summary: summary.clone(),
                });
            }
            NodeEvent::Failed {
                transfer,
                reason,
                cause,
                ..
            } if mine(transfer) => self.end(TransferPhase::Failed {
                cause: cause.clone(),
                reason: reason.clone(),
            }),
            _ => {}
        }
    }

    /// Ends it: no rate, no peer.
    pub(crate) fn end(&mut self, phase: TransferPhase) {
        self.progress.rate_bytes_per_sec = 0.0;
        self.progress.upload_rate_bytes_per_sec = 0.0;
        self.progress.peers = 0;
        self.peers.clear();
        self.phase = phase;
    }
}

/// Which bytes of a download are here, on their way or missing: what a player draws under
/// its seek bar (issue 10, item 4). Ranges are byte ranges of the file, ascending, disjoint,
/// with neighbours merged; bytes in neither list are missing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PieceMap {
    /// File length in bytes (0 until the manifest is known).
    pub len_bytes: u64,
    /// Piece length in bytes (0 until the manifest is known).
    pub piece_len: u64,
    /// Verified and written: a player can read them now.
    pub have: Vec<std::ops::Range<u64>>,
    /// Requested from a peer, or verified and being written.
    pub in_flight: Vec<std::ops::Range<u64>>,
    /// The media's playing time in seconds, once its container said (MP4 `mvhd`, Matroska
    /// `Info`; read from verified bytes after a player first asked for the stream).
    pub duration_secs: Option<f64>,
}

impl PieceMap {
    /// The map of a file of `len_bytes` in pieces of `piece_len` bytes, from the pieces had
    /// and in flight (each ascending).
    pub(crate) fn from_pieces(
        len_bytes: u64,
        piece_len: u64,
        have: impl IntoIterator<Item = u32>,
        in_flight: impl IntoIterator<Item = u32>,
    ) -> Self {
        let runs = |pieces: &mut dyn Iterator<Item = u32>| {
            let mut out: Vec<std::ops::Range<u64>> = Vec::new();
            for piece in pieces {
                let start = u64::from(piece) * piece_len;
                let end = (start + piece_len).min(len_bytes);
                if start >= end {
                    continue;
                }
                match out.last_mut() {
                    Some(last) if last.end == start => last.end = end,
                    _ => out.push(start..end),
                }
            }
            out
        };
        Self {
            len_bytes,
            piece_len,
            have: runs(&mut have.into_iter()),
            in_flight: runs(&mut in_flight.into_iter()),
            duration_secs: None,
        }
    }

    /// The map of a file that is all here.
    pub fn complete(len_bytes: u64) -> Self {
        Self {
            len_bytes,
            piece_len: 0,
            have: std::iter::once(0..len_bytes)
                .filter(|r| !r.is_empty())
                .collect(),
            in_flight: Vec::new(),
            duration_secs: None,
        }
    }

    /// Whether the bytes that play from `position_secs` for `ahead_secs` are here, by the
    /// file's average bitrate (length / duration; the file's end at the latest). `None`
    /// until the duration is known. An estimate: a room uses it for a paused player whose
    /// own `buffered` ranges say less than they could (WebKitGTK on a paused frame).
    pub fn covers_secs(&self, position_secs: f64, ahead_secs: f64) -> Option<bool> {
        let duration = self.duration_secs.filter(|d| *d > 0.0 && d.is_finite())?;
        if !(position_secs.is_finite() && ahead_secs.is_finite()) {
            return Some(false);
        }
        let len = self.len_bytes as f64;
        let at = |secs: f64| ((secs / duration).clamp(0.0, 1.0) * len) as u64;
        let (from, to) = (at(position_secs), at(position_secs + ahead_secs.max(0.0)));
        let to = to.max(from + 1).min(self.len_bytes);
        Some(self.have.iter().any(|r| r.start <= from && to <= r.end))
    }
}

/// What one shared file serves.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadProgress {
    /// The content.
    pub info_hash: InfoHash,
    /// Nodes with at least one open link to it.
    pub peers: usize,
    /// Bytes handed to peers' data channels since it was shared.
    pub sent_bytes: u64,
    /// Send rate over the last second, bytes per second.
    pub rate_bytes_per_sec: f64,
    /// Nodes that were sent at least one whole piece since it was shared (for a finished
    /// download that stayed shared, since the download started).
    pub peers_served: usize,
}

/// How a finished download went.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferSummary {
    /// Bytes already present (verified) when the download started, from a `.part` file.
    pub resumed_bytes: u64,
    /// Piece bytes verified from peers in this run.
    pub fetched_bytes: u64,
    /// Piece bytes received per peer.
    pub per_peer_bytes: Vec<(NodeId, u64)>,
    /// Time from start to completion.
    pub elapsed: Duration,
}

/// Everything a front end is told.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// The signaling connection changed.
    Connection(ConnectionState),
    /// Hashing a file to share it.
    HashingProgress {
        /// The file.
        path: PathBuf,
        /// Bytes hashed.
        bytes_done: u64,
        /// File length in bytes.
        len_bytes: u64,
    },
    /// A file is shared and in the index.
    Shared(SharedFile),
    /// A share stopped on its own (its file changed or vanished).
    ShareStopped {
        /// The content.
        info_hash: InfoHash,
        /// Why, in words.
        reason: String,
    },
    /// The network's index changed; list again to see it.
    IndexChanged,
    /// A peer connection's data channel opened.
    PeerConnected {
        /// The content it carries.
        info_hash: InfoHash,
        /// The download it serves, if this node is downloading.
        transfer: Option<TransferId>,
        /// The remote node.
        peer: NodeId,
        /// How it is reached: host (direct), srflx (through NAT, via STUN) or relay (TURN).
        candidate_type: CandidateType,
    },
    /// A download started (after lookup); `resumed_bytes` were already on disk.
    DownloadStarted {
        /// The download.
        transfer: TransferId,
        /// Its content.
        info_hash: InfoHash,
        /// The name it will get.
        name: String,
        /// Length in bytes, from the index.
        len_bytes: u64,
        /// Bytes found verified in a `.part` file.
        resumed_bytes: u64,
    },
    /// Download progress, about four times a second.
    DownloadProgress(DownloadProgress),
    /// What a share serves, about four times a second while something changes (bytes sent
    /// or peers connected), and once more when it falls idle.
    UploadProgress(UploadProgress),
    /// A peer sent bad data and was banned for this content.
    PeerBanned {
        /// The download.
        transfer: TransferId,
        /// The peer.
        peer: NodeId,
        /// What it did (a corrupt piece or manifest, a protocol violation...); its
        /// `Display` is the sentence.
        reason: crate::CloseReason,
    },
    /// A download finished: the verified file is at `path`.
    Completed {
        /// The download.
        transfer: TransferId,
        /// Its content.
        info_hash: InfoHash,
        /// The final file.
        path: PathBuf,
        /// Figures.
        summary: TransferSummary,
    },
    /// Something happened in a room this node is in (issue 11).
    Room(RoomEvent),
    /// A download failed or was cancelled; its `.part` file stays for a resume.
    Failed {
        /// The download.
        transfer: TransferId,
        /// Its content.
        info_hash: InfoHash,
        /// Why, in words.
        reason: String,
        /// Why, for a front end to choose its words and what to do next.
        cause: FailureCause,
    },
}

/// Why a download ended without its file. In every case the `.part` file and its resume
/// state stay: downloading the same content again resumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureCause {
    /// Cancelled through [`crate::NodeHandle::cancel`].
    Cancelled,
    /// No holder is online and none was reached: worth trying again when the content is
    /// back in the index.
    NoHolders,
    /// Every holder went away, stalled, failed to connect or was banned: each one's last
    /// fault, the latest last. Worth trying again when a holder is back.
    SourcesFailed {
        /// (holder, its last fault).
        peers: Vec<(NodeId, PeerFault)>,
    },
    /// The disk is full (`shoal_storage::StorageError::DiskFull`): free space, then try
    /// again.
    DiskFull,
    /// The file could not be created, written or finished (permissions, a missing folder,
    /// an I/O error).
    Storage,
}

/// What a holder did that counts against it in a download ([`FailureCause::SourcesFailed`]);
/// its `Display` is the words ("connecting: no answer", "banned: sent piece 3 that failed
/// verification", "stalled: requests went unanswered").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerFault {
    /// A peer connection to it did not open (signaling, ICE or the data channel failed, or
    /// timed out): the failure in words, from the WebRTC stack.
    Connect(String),
    /// Its peer connection closed while the download used it.
    Closed,
    /// It stopped reading what this node sends (more than the per-link queue, 32 MiB, piled
    /// up).
    NotReading,
    /// The swarm closed its link for what it did (stalled, broke the peer wire protocol, a
    /// handshake for other content, a max-message-size too small).
    Link(crate::CloseReason),
    /// It sent data that failed verification (a piece or the manifest) and is banned for this
    /// content.
    Banned(crate::CloseReason),
}

impl std::fmt::Display for PeerFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(reason) => write!(f, "connecting: {reason}"),
            Self::Closed => f.write_str("closed the connection"),
            Self::NotReading => f.write_str("stopped reading what we send"),
            Self::Link(reason) => write!(f, "{reason}"),
            Self::Banned(reason) => write!(f, "banned: {reason}"),
        }
    }
}

impl FailureCause {
    /// No holder, or every holder failed: the download may resume by itself when a holder
    /// is back in the index.
    pub fn is_no_source(&self) -> bool {
        matches!(self, Self::NoHolders | Self::SourcesFailed { .. })
    }

    /// The cause of a storage error: a full disk, or any other.
    pub fn of_storage(error: &shoal_storage::StorageError) -> Self {
        match error {
            shoal_storage::StorageError::DiskFull { .. } => Self::DiskFull,
            _ => Self::Storage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_the_fold_of_its_downloads_events() {
        let (me, other) = (TransferId(7), TransferId(8));
        let info_hash = InfoHash::from_bytes([1; 32]);
        let (a, b) = (NodeId::random(), NodeId::random());
        let progress = |transfer, bytes_done, peers| DownloadProgress {
            transfer,
            info_hash,
            name: "clip.webm".into(),
            bytes_done,
            len_bytes: 1000,
            rate_bytes_per_sec: 50.0,
            peers,
            sent_bytes: 10,
            upload_rate_bytes_per_sec: 5.0,
            peers_served: 1,
        };
        let mut s = TransferStatus::new(progress(me, 0, 0), "/downloads".into());
        let connected = |transfer, peer| NodeEvent::PeerConnected {
            info_hash,
            transfer: Some(transfer),
            peer,
            candidate_type: CandidateType::Host,
        };
        for event in [
            NodeEvent::DownloadStarted {
                transfer: me,
                info_hash,
                name: "clip.webm".into(),
                len_bytes: 1000,
                resumed_bytes: 300,
            },
            connected(me, a),
            connected(me, a),
            connected(me, b),
            connected(other, b),
            NodeEvent::DownloadProgress(progress(other, 999, 1)),
        ] {
            s.apply(&event);
        }
        assert_eq!((s.resumed_bytes, s.progress.bytes_done), (300, 300));
        assert_eq!(
            s.peers.iter().map(|p| p.peer).collect::<Vec<_>>(),
            [a, b],
            "each node once; another download's events change nothing"
        );
        s.apply(&NodeEvent::PeerBanned {
            transfer: me,
            peer: a,
            reason: crate::CloseReason::CorruptPiece(2),
        });
        s.apply(&NodeEvent::DownloadProgress(progress(me, 600, 1)));
        assert_eq!(s.progress.bytes_done, 600);
        assert_eq!(s.peers.len(), 1);
        assert!(s.is_running());
        let summary = TransferSummary {
            resumed_bytes: 300,
            fetched_bytes: 700,
            per_peer_bytes: vec![(b, 700)],
            elapsed: Duration::from_secs(1),
        };
        s.apply(&NodeEvent::Completed {
            transfer: me,
            info_hash,
            path: "/downloads/clip.webm".into(),
            summary: summary.clone(),
        });
        assert_eq!(
            s.phase,
            TransferPhase::Completed {
                path: "/downloads/clip.webm".into(),
                summary
            }
        );
        assert_eq!(s.progress.bytes_done, 1000);
        assert_eq!(s.progress.rate_bytes_per_sec, 0.0);
        assert!(s.peers.is_empty());
        // Told late, after the end: changes nothing.
        let ended = s.clone();
        s.apply(&connected(me, a));
        s.apply(&NodeEvent::DownloadProgress(progress(me, 10, 1)));
        assert_eq!(s, ended);
    }

    #[test]
    fn a_piece_map_merges_neighbouring_pieces_and_clips_the_last() {
        let map = PieceMap::from_pieces(10 * 4 + 1, 4, [0, 1, 2, 5, 10], [3, 7, 8]);
        assert_eq!(map.have, [0..12, 20..24, 40..41]);
        assert_eq!(map.in_flight, [12..16, 28..36]);
        assert_eq!(PieceMap::from_pieces(8, 4, [], [5]).in_flight, []);
        assert_eq!(PieceMap::complete(9).have, vec![0..9; 1]);
        assert!(PieceMap::complete(0).have.is_empty());
    }

    #[test]
    fn a_piece_map_says_whether_the_next_seconds_are_here_by_the_average_bitrate() {
        // 100 bytes playing 10 s: 10 bytes a second; bytes 0..40 and 60..100 are here.
        let mut map = PieceMap::from_pieces(100, 20, [0, 1, 3, 4], []);
        assert_eq!(map.covers_secs(0.0, 2.0), None, "no duration yet");
        map.duration_secs = Some(10.0);
        assert_eq!(map.covers_secs(0.0, 2.0), Some(true));
        assert_eq!(map.covers_secs(1.0, 2.0), Some(true));
        assert_eq!(map.covers_secs(3.0, 2.0), Some(false), "bytes 30..50");
        assert_eq!(map.covers_secs(6.0, 2.0), Some(true));
        // Near the end, the end is enough.
        assert_eq!(map.covers_secs(9.5, 2.0), Some(true));
        assert_eq!(map.covers_secs(f64::NAN, 2.0), Some(false));
    }
}
