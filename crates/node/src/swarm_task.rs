//! The driver of one content's [`Swarm`]: owns the swarm, its file (the original for a share,
//! the `.part` file for a download), its links, the clock; runs the sans-IO loop.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use shoal_protocol::{InfoHash, NodeId};
use shoal_rtc::{DataLink, PeerLink};
use shoal_storage::{Bitfield, Manifest, PartFile, SourceFile};
use shoal_transfer::{
    CloseReason, Input, LinkId, Output, Playhead, Swarm, SwarmConfig, SwarmEvent,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::NodeError;
use crate::actor::Internal;
use crate::events::{
    DownloadProgress, FailureCause, NodeEvent, PeerFault, PieceMap, TransferId, TransferPhase,
    TransferStatus, TransferSummary, UploadProgress,
};
use crate::limit::Limits;
use crate::media_duration::Duration as MediaDuration;
use crate::stream::{
    READ_AHEAD_BYTES, READ_AHEAD_SECS, ReaderUpdate, StreamFeed, StreamState, read_ahead_bytes,
};

/// How often progress is reported.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// How often a download's resume file is saved while pieces arrive.
const RESUME_INTERVAL: Duration = Duration::from_secs(1);
/// Messages from all link readers waiting for the swarm task.
const IO_QUEUE: usize = 256;
/// Bytes queued for one link's writer before the link is closed as not reading. The swarm
/// queues at most two pieces, a manifest (at most 16 MB) and control messages per link.
const MAX_QUEUED_BYTES: usize = 32 << 20;

pub(crate) struct SwarmSpec {
    pub(crate) info_hash: InfoHash,
    pub(crate) events: mpsc::Sender<NodeEvent>,
    pub(crate) internal: mpsc::UnboundedSender<Internal>,
    /// The node's bandwidth caps.
    pub(crate) limits: Limits,
}

/// What to download, and where.
pub(crate) struct DownloadSpec {
    pub(crate) transfer: TransferId,
    /// Where it stands: every event about it is folded in before it is sent.
    pub(crate) status: watch::Sender<TransferStatus>,
    /// Final file name, already safe.
    pub(crate) name: String,
    /// Length from the index (a claim until the manifest says).
    pub(crate) len_bytes: u64,
    /// The folder.
    pub(crate) dir: PathBuf,
    /// Keep serving the finished file as a share ([`crate::NodeConfig::share_completed`]).
    pub(crate) share_after: bool,
    /// Where the finished file's manifest is remembered, so sharing it again later reads
    /// nothing ([`crate::NodeConfig::hash_cache`]).
    pub(crate) hash_cache: Option<PathBuf>,
    /// What players streaming it read, and where they read ([`crate::stream`]).
    pub(crate) stream: StreamFeed,
}

/// What a swarm task is for: serving a shared file, or downloading one.
enum Role {
    /// Serves the user's original file.
    Seed {
        /// The file, read and re-checked piece by piece.
        source: Arc<SourceFile>,
    },
    /// Downloads into a `.part` file (and serves its verified pieces).
    Download(Box<Download>),
}

/// A download's own state.
struct Download {
    transfer: TransferId,
    /// Final file name (already made safe) and folder.
    name: String,
    dir: PathBuf,
    /// Length from the index, until the manifest says.
    len_bytes: u64,
    /// What [`crate::NodeHandle::transfer`] answers: every event about the download is
    /// folded in before it is sent.
    status: watch::Sender<TransferStatus>,
    /// `None` until the manifest is known.
    part: Option<PartFile>,
    /// Verified bytes found in the `.part` file at start.
    resumed_bytes: u64,
    /// Verified bytes received, in all and per peer.
    fetched_bytes: u64,
    per_peer: HashMap<NodeId, u64>,
    resume_dirty: bool,
    last_resume_save: Instant,
    share_after: bool,
    hash_cache: Option<PathBuf>,
    /// Published for readers: manifest, `.part` file, pieces written.
    stream: watch::Sender<StreamState>,
    /// Pieces last published to readers.
    published: u32,
    /// Readers (requests of the media server) and the byte each needs next.
    readers: BTreeMap<u64, u64>,
    /// Bytes each reader's read-ahead covers: [`READ_AHEAD_SECS`] of media once the
    /// container said how long the file plays.
    read_ahead: u64,
    /// The media's playing time, once its container said (seconds).
    duration_secs: Option<f64>,
    /// Still looking for the playing time (a reader came, the container did not answer yet).
    seeking_duration: bool,
}

impl Role {
    fn transfer(&self) -> Option<TransferId> {
        match self {
            Self::Seed { .. } => None,
            Self::Download(d) => Some(d.transfer),
        }
    }
}

pub(crate) enum SwarmCommand {
    AddLink {
        peer: NodeId,
        link: PeerLink,
        data: DataLink,
    },
    /// Stop, keeping the `.part` file; reported as failed ("cancelled").
    Cancel,
    /// Fail: the actor found no source (the cause, and the sentence for people).
    Fail(FailureCause, String),
    /// Stop quietly (node shutdown or unshare).
    Stop,
    /// Answer which pieces are here and on their way.
    PieceMap(oneshot::Sender<Result<PieceMap, NodeError>>),
}

/// A swarm task ended: what the actor needs to know, by role.
pub(crate) enum SwarmEnded {
    /// A share's swarm.
    Share {
        info_hash: InfoHash,
        /// Why it stopped serving on its own; `None` when it was asked to stop.
        error: Option<String>,
    },
    /// A download's swarm (its outcome was told as a `NodeEvent`).
    Download {
        info_hash: InfoHash,
        transfer: TransferId,
        /// The finished file of a completed download.
        path: Option<PathBuf>,
    },
}

enum LinkIo {
    Message { link: LinkId, data: Bytes },
    Closed { link: LinkId },
    PieceSent { link: LinkId },
}

struct LinkEntry {
    peer: NodeId,
    writer: mpsc::UnboundedSender<(Bytes, bool)>,
    /// Bytes handed to the writer and not yet sent.
    queued_bytes: Arc<AtomicUsize>,
    link: Arc<PeerLink>,
    tasks: [JoinHandle<()>; 2],
}

enum Outcome {
    Completed,
    /// Completed, and `Completed` already sent: only the end is left.
    Told(PathBuf),
    Failed(FailureCause, String),
    Stopped,
}

struct Driver {
    spec: SwarmSpec,
    swarm: Swarm,
    role: Role,
    links: HashMap<LinkId, LinkEntry>,
    next_link: u64,
    io_tx: mpsc::Sender<LinkIo>,
    started: Instant,
    rate_window: VecDeque<(Instant, u64)>,
    /// Bytes handed to links' writers (uploads, by a share or a download).
    sent_bytes: u64,
    /// `sent_bytes` over time, for the upload rate of a download.
    upload_window: VecDeque<(Instant, u64)>,
    /// Nodes sent at least one whole piece.
    served: std::collections::HashSet<NodeId>,
    /// What the last upload event said (sent bytes, peers), so an idle share stays quiet.
    last_upload_report: (u64, usize),
    outcome: Option<Outcome>,
}

/// Serves a shared file until stopped or until the file changes.
pub(crate) async fn run_seeding(
    spec: SwarmSpec,
    manifest: Manifest,
    source: Arc<SourceFile>,
    config: SwarmConfig,
    commands: mpsc::UnboundedReceiver<SwarmCommand>,
) {
    let now = Instant::now().into_std();
    let have = Bitfield::full(manifest.layout().piece_count());
    let swarm = Swarm::with_manifest(manifest, have, config, now);
    let (driver, io_rx) = Driver::new(spec, swarm, Role::Seed { source });
    driver.run(commands, io_rx, None).await;
}

/// Downloads a file into `dir`, resuming a `.part` file of the same content there.
pub(crate) async fn run_download(
    spec: SwarmSpec,
    what: DownloadSpec,
    config: SwarmConfig,
    commands: mpsc::UnboundedReceiver<SwarmCommand>,
) {
    let info_hash = spec.info_hash;
    let DownloadSpec {
        transfer,
        status,
        name,
        len_bytes,
        dir,
        share_after,
        hash_cache,
        stream,
    } = what;
    let StreamFeed {
        state: stream,
        readers,
    } = stream;
    let resume_dir = dir.clone();
    let resumed = tokio::task::spawn_blocking(move || PartFile::resume(&resume_dir, info_hash))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let now = Instant::now().into_std();
    let (swarm, part, resumed_bytes) = match resumed {
        Ok(Some(part)) => {
            let bytes = part.manifest().layout().bytes_in(part.have());
            info!(info_hash = %info_hash.short(), pieces = part.have().count(), "resuming");
            let swarm =
                Swarm::with_manifest(part.manifest().clone(), part.have().clone(), config, now);
            (swarm, Some(part), bytes)
        }
        Ok(None) => (Swarm::new_download(info_hash, config, now), None, 0),
        Err(reason) => {
            stream.send_modify(|s| s.ended = Some(reason.clone()));
            return fail_early(spec, transfer, &status, reason).await;
        }
    };
    let started = NodeEvent::DownloadStarted {
        transfer,
        info_hash,
        name: name.clone(),
        len_bytes,
        resumed_bytes,
    };
    status.send_modify(|s| s.apply(&started));
    let _ = spec.events.send(started).await;
    let role = Role::Download(Box::new(Download {
        transfer,
        name,
        dir,
        len_bytes,
        status,
        part,
        resumed_bytes,
        fetched_bytes: 0,
        per_peer: HashMap::new(),
        resume_dirty: false,
        last_resume_save: Instant::now(),
        share_after,
        hash_cache,
        stream,
        published: 0,
        readers: BTreeMap::new(),
        read_ahead: READ_AHEAD_BYTES,
        duration_secs: None,
        seeking_duration: true,
    }));
    let (mut driver, io_rx) = Driver::new(spec, swarm, role);
    if driver.swarm.manifest().is_some() {
        // Resumed: it holds pieces others may want, and readers may read them.
        let _ = driver
            .spec
            .internal
            .send(Internal::ManifestKnown { transfer });
        driver.open_for_readers();
    }
    if driver.swarm.is_complete() {
        driver.outcome = Some(Outcome::Completed);
    }
    driver.run(commands, io_rx, Some(readers)).await;
}

async fn fail_early(
    spec: SwarmSpec,
    transfer: TransferId,
    status: &watch::Sender<TransferStatus>,
    reason: String,
) {
    let failed = NodeEvent::Failed {
        transfer,
        info_hash: spec.info_hash,
        reason,
        // Opening or resuming the part file failed.
        cause: FailureCause::Storage,
    };
    status.send_modify(|s| s.apply(&failed));
    let _ = spec.events.send(failed).await;
    let _ = spec
        .internal
        .send(Internal::SwarmEnded(SwarmEnded::Download {
            info_hash: spec.info_hash,
            transfer,
            path: None,
        }));
}

impl Driver {
    fn new(spec: SwarmSpec, swarm: Swarm, role: Role) -> (Self, mpsc::Receiver<LinkIo>) {
        let (io_tx, io_rx) = mpsc::channel(IO_QUEUE);
        let driver = Self {
            spec,
            swarm,
            role,
            links: HashMap::new(),
            next_link: 1,
            io_tx,
            started: Instant::now(),
            rate_window: VecDeque::new(),
            sent_bytes: 0,
            upload_window: VecDeque::new(),
            served: std::collections::HashSet::new(),
            last_upload_report: (0, 0),
            outcome: None,
        };
        (driver, io_rx)
    }

    fn feed(&mut self, input: Input<'_>) {
        self.swarm.handle_input(input, Instant::now().into_std());
    }

    /// Tells the swarm the node's download cap, which may change at any time
    /// (`NodeHandle::set_limits`): read at start and every progress tick (250 ms), not on
    /// every message.
    fn refresh_download_cap(&mut self) {
        self.swarm
            .set_download_cap(self.spec.limits.download.bytes_per_sec());
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<SwarmCommand>,
        mut io_rx: mpsc::Receiver<LinkIo>,
        mut readers: Option<mpsc::UnboundedReceiver<ReaderUpdate>>,
    ) {
        let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.refresh_download_cap();
        loop {
            let deadline = self.drain();
            self.publish();
            if let Some(outcome) = self.outcome.take() {
                if matches!(outcome, Outcome::Completed)
                    && matches!(&self.role, Role::Download(d) if d.share_after)
                {
                    // Serves on as a share, links and all; a failure sets another outcome.
                    self.become_seed().await;
                    continue;
                }
                self.finish(outcome).await;
                return;
            }
            tokio::select! {
                command = commands.recv() => match command {
                    Some(SwarmCommand::AddLink { peer, link, data }) => self.add_link(peer, link, data),
                    Some(SwarmCommand::Cancel) => self.outcome = Some(Outcome::Failed(FailureCause::Cancelled, "cancelled".into())),
                    Some(SwarmCommand::Fail(cause, reason)) => self.outcome = Some(Outcome::Failed(cause, reason)),
                    Some(SwarmCommand::Stop) | None => self.outcome = Some(Outcome::Stopped),
                    Some(SwarmCommand::PieceMap(reply)) => {
                        let _ = reply.send(Ok(self.piece_map()));
                    }
                },
                Some(io) = io_rx.recv() => self.on_io(io),
                update = async {
                    match readers.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => match update {
                    Some(update) => self.on_reader(update),
                    None => readers = None,
                },
                _ = tokio::time::sleep_until(Instant::from_std(deadline)) => self.feed(Input::Timeout),
                _ = progress.tick() => {
                    self.refresh_download_cap();
                    self.on_tick();
                }
            }
        }
    }

    /// Handles outputs until the swarm has nothing more to do; returns its next deadline.
    fn drain(&mut self) -> std::time::Instant {
        loop {
            match self.swarm.poll_output() {
                Output::Timeout(at) => return at,
                Output::Transmit {
                    link,
                    message,
                    piece_end,
                } => {
                    let Some(entry) = self.links.get(&link) else {
                        continue;
                    };
                    // Unbounded so the writer never blocks this task (that would deadlock
                    // with the readers), but a peer that stops reading while we keep
                    // answering it is dropped past MAX_QUEUED_BYTES.
                    let len = message.len();
                    let queued = entry.queued_bytes.fetch_add(len, Ordering::Relaxed) + len;
                    if queued > MAX_QUEUED_BYTES {
                        warn!(%link, queued, "peer is not reading; closing the link");
                        self.feed(Input::LinkClosed { link });
                        self.remove_link(link, Some(PeerFault::NotReading));
                    } else {
                        self.sent_bytes += len as u64;
                        if piece_end {
                            self.served.insert(entry.peer);
                        }
                        let _ = entry.writer.send((message, piece_end));
                    }
                }
                Output::ReadPiece { link, piece } => {
                    let read = match &self.role {
                        Role::Seed { source } => source.read_piece(piece),
                        Role::Download(d) => match &d.part {
                            Some(part) => part.read_piece(piece),
                            None => continue,
                        },
                    };
                    match read {
                        Ok(data) => self.feed(Input::PieceRead {
                            link,
                            piece,
                            data: Bytes::from(data),
                        }),
                        Err(e) => {
                            warn!(info_hash = %self.spec.info_hash.short(), error = %e, "cannot serve a piece");
                            self.feed(Input::PieceReadFailed { link, piece });
                            if matches!(self.role, Role::Seed { .. }) {
                                self.outcome =
                                    Some(Outcome::Failed(FailureCause::Storage, e.to_string()));
                            }
                        }
                    }
                }
                Output::WritePiece { piece, data } => {
                    let Role::Download(download) = &mut self.role else {
                        continue;
                    };
                    let Some(part) = &mut download.part else {
                        continue;
                    };
                    match part.write_piece(piece, &data) {
                        Ok(()) => {
                            download.resume_dirty = true;
                            self.feed(Input::PieceWritten { piece });
                        }
                        Err(e) => {
                            self.outcome =
                                Some(Outcome::Failed(FailureCause::of_storage(&e), e.to_string()))
                        }
                    }
                }
                Output::CloseLink { link, reason } => {
                    debug!(%link, %reason, "closing link");
                    // Idle and surplus links are not the peer's fault.
                    let failure = match reason {
                        CloseReason::Idle | CloseReason::TooManyLinks => None,
                        other => Some(PeerFault::Link(other)),
                    };
                    self.remove_link(link, failure);
                }
                Output::Event(event) => self.on_swarm_event(event),
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent) {
        match event {
            SwarmEvent::ManifestReady(manifest) => {
                if let Role::Download(d) = &mut self.role
                    && d.part.is_none()
                {
                    match PartFile::create(&d.dir, &d.name, &manifest) {
                        Ok(created) => {
                            debug!(path = %created.part_path().display(), "download file created");
                            d.part = Some(created);
                            let _ = self.spec.internal.send(Internal::ManifestKnown {
                                transfer: d.transfer,
                            });
                            self.open_for_readers();
                        }
                        Err(e) => {
                            self.outcome =
                                Some(Outcome::Failed(FailureCause::of_storage(&e), e.to_string()))
                        }
                    }
                }
            }
            SwarmEvent::Verified { piece, from } => {
                let size = self
                    .swarm
                    .manifest()
                    .map(|m| u64::from(m.layout().piece_size(piece)))
                    .unwrap_or(0);
                if let Role::Download(d) = &mut self.role {
                    d.fetched_bytes += size;
                    *d.per_peer.entry(from).or_default() += size;
                }
            }
            SwarmEvent::PeerBanned { node, reason } => {
                warn!(peer = %node.short(), %reason, "peer banned");
                if let Role::Download(d) = &self.role {
                    let transfer = d.transfer;
                    let banned = NodeEvent::PeerBanned {
                        transfer,
                        peer: node,
                        reason: reason.clone(),
                    };
                    d.status.send_modify(|s| s.apply(&banned));
                    let _ = self.spec.events.try_send(banned);
                    let _ = self.spec.internal.send(Internal::PeerBanned {
                        transfer,
                        peer: node,
                        reason: reason.clone(),
                    });
                }
            }
            SwarmEvent::Completed => {
                if matches!(self.role, Role::Download(_)) {
                    self.outcome = Some(Outcome::Completed);
                }
            }
        }
    }

    /// Opens the `.part` file for readers and publishes the manifest and the pieces had.
    fn open_for_readers(&mut self) {
        let Role::Download(d) = &mut self.role else {
            return;
        };
        let Some(part) = &d.part else {
            return;
        };
        match std::fs::File::open(part.part_path()) {
            Ok(file) => {
                let manifest = self.swarm.manifest().cloned();
                let have = self.swarm.have().clone();
                d.published = have.count();
                d.stream.send_modify(|s| {
                    s.manifest = manifest;
                    s.file = Some(Arc::new(file));
                    s.have = Some(have);
                });
            }
            Err(e) => warn!(error = %e, "cannot open the .part file for players"),
        }
    }

    /// Which pieces are here and on their way, as byte ranges.
    fn piece_map(&self) -> PieceMap {
        let Some(layout) = self.swarm.manifest().map(|m| *m.layout()) else {
            return PieceMap::default();
        };
        let mut map = PieceMap::from_pieces(
            layout.len_bytes(),
            u64::from(layout.piece_len()),
            self.swarm.have().iter_set(),
            self.swarm.in_flight(),
        );
        if let Role::Download(d) = &self.role {
            map.duration_secs = d.duration_secs;
        }
        map
    }

    /// Publishes newly written pieces to readers.
    fn publish(&mut self) {
        let Role::Download(d) = &mut self.role else {
            return;
        };
        let count = self.swarm.have().count();
        if count != d.published && d.part.is_some() {
            d.published = count;
            let have = self.swarm.have().clone();
            d.stream.send_modify(|s| s.have = Some(have));
            if d.seeking_duration && !d.readers.is_empty() {
                self.find_duration();
            }
        }
    }

    /// Asks the container how long the file plays (from verified bytes only); once it says,
    /// each reader's read-ahead is [`READ_AHEAD_SECS`] of media at the file's bitrate.
    fn find_duration(&mut self) {
        let Role::Download(d) = &mut self.role else {
            return;
        };
        let (Some(manifest), Some(file)) = (self.swarm.manifest(), d.stream.borrow().file.clone())
        else {
            return;
        };
        let layout = *manifest.layout();
        let have = self.swarm.have();
        let len = layout.len_bytes();
        let read = |offset: u64, n: usize| -> Option<Vec<u8>> {
            let end = offset.checked_add(n as u64)?.min(len);
            if offset >= end {
                return Some(Vec::new());
            }
            let first = layout.piece_at(offset)?;
            let last = layout.piece_at(end - 1)?;
            if !(first.get()..=last.get()).all(|p| have.has_raw(p)) {
                return None;
            }
            let mut buf = vec![0u8; (end - offset) as usize];
            std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buf, offset).ok()?;
            Some(buf)
        };
        match crate::media_duration::duration(len, &read) {
            MediaDuration::NotYet => {}
            MediaDuration::Unknown => {
                d.seeking_duration = false;
                debug!(
                    "no playing time in the container; read-ahead stays {READ_AHEAD_BYTES} bytes"
                );
            }
            MediaDuration::Secs(secs) => {
                d.seeking_duration = false;
                d.duration_secs = Some(secs);
                d.read_ahead = read_ahead_bytes(len, secs);
                info!(
                    secs,
                    read_ahead = d.read_ahead,
                    "playing time from the container: read-ahead is {READ_AHEAD_SECS} s of media"
                );
                self.feed_playheads();
            }
        }
    }

    /// A reader moved or left: the swarm gets the new playheads.
    fn on_reader(&mut self, update: ReaderUpdate) {
        let Role::Download(d) = &mut self.role else {
            return;
        };
        match update {
            ReaderUpdate::At { id, offset } => {
                d.readers.insert(id, offset);
            }
            ReaderUpdate::Gone { id } => {
                d.readers.remove(&id);
            }
        }
        debug!(readers = ?d.readers, "playheads");
        if d.seeking_duration && !d.readers.is_empty() {
            self.find_duration();
        }
        self.feed_playheads();
    }

    /// Tells the swarm where the readers are.
    fn feed_playheads(&mut self) {
        let Role::Download(d) = &self.role else {
            return;
        };
        // Newest request first: a player's latest request (a seek) is what it waits for; an
        // older one may be abandoned and only noticed at its next write.
        let playheads: Vec<Playhead> = d
            .readers
            .values()
            .rev()
            .map(|offset| Playhead {
                offset: *offset,
                ahead_bytes: d.read_ahead,
            })
            .collect();
        self.feed(Input::Playheads(&playheads));
    }

    fn add_link(&mut self, peer: NodeId, link: PeerLink, data: DataLink) {
        let id = LinkId(self.next_link);
        self.next_link += 1;
        let data = Arc::new(data);
        let link = Arc::new(link);
        let (writer_tx, mut writer_rx) = mpsc::unbounded_channel::<(Bytes, bool)>();
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let reader = {
            let data = data.clone();
            let io = self.io_tx.clone();
            let limit = self.spec.limits.download.clone();
            tokio::spawn(async move {
                while let Some(message) = data.recv().await {
                    limit.acquire(message.len()).await;
                    if io
                        .send(LinkIo::Message {
                            link: id,
                            data: message,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let _ = io.send(LinkIo::Closed { link: id }).await;
            })
        };
        let writer = {
            let data = data.clone();
            let io = self.io_tx.clone();
            let queued_bytes = queued_bytes.clone();
            let limit = self.spec.limits.upload.clone();
            tokio::spawn(async move {
                while let Some((message, piece_end)) = writer_rx.recv().await {
                    let len = message.len();
                    limit.acquire(len).await;
                    let sent = data.send(message).await;
                    queued_bytes.fetch_sub(len, Ordering::Relaxed);
                    if let Err(e) = sent {
                        debug!(link = %id, error = %e, "send failed");
                        let _ = io.send(LinkIo::Closed { link: id }).await;
                        return;
                    }
                    if piece_end && io.send(LinkIo::PieceSent { link: id }).await.is_err() {
                        return;
                    }
                }
            })
        };
        {
            let data = data.clone();
            let events = self.spec.events.clone();
            let info_hash = self.spec.info_hash;
            let transfer = self.role.transfer();
            let status = match &self.role {
                Role::Download(d) => Some(d.status.clone()),
                Role::Seed { .. } => None,
            };
            tokio::spawn(async move {
                let candidate_type = data.candidate_type().await;
                let connected = NodeEvent::PeerConnected {
                    info_hash,
                    transfer,
                    peer,
                    candidate_type,
                };
                if let Some(status) = status {
                    status.send_modify(|s| s.apply(&connected));
                }
                let _ = events.send(connected).await;
            });
        }
        let max_message_bytes = data.max_message_size();
        self.links.insert(
            id,
            LinkEntry {
                peer,
                writer: writer_tx,
                queued_bytes,
                link,
                tasks: [reader, writer],
            },
        );
        debug!(%id, peer = %peer.short(), max_message_bytes, "link added");
        self.feed(Input::LinkOpened {
            link: id,
            node: peer,
            max_message_bytes,
        });
    }

    /// Closes a link. `failure` says what the peer did wrong, `None` when the link ended
    /// through no fault of the peer's; the node's holder policy counts failures.
    fn remove_link(&mut self, link: LinkId, failure: Option<PeerFault>) {
        let Some(entry) = self.links.remove(&link) else {
            return;
        };
        for task in &entry.tasks {
            task.abort();
        }
        let peer_link = entry.link;
        tokio::spawn(async move { peer_link.close().await });
        if let Some(transfer) = self.role.transfer() {
            let _ = self.spec.internal.send(Internal::LinkClosed {
                transfer,
                peer: entry.peer,
                failure,
            });
        }
    }

    fn on_io(&mut self, io: LinkIo) {
        match io {
            LinkIo::Message { link, data } => {
                if self.links.contains_key(&link) {
                    self.feed(Input::Message { link, data: &data });
                }
            }
            LinkIo::Closed { link } => {
                if self.links.contains_key(&link) {
                    self.feed(Input::LinkClosed { link });
                    self.remove_link(link, Some(PeerFault::Closed));
                }
            }
            LinkIo::PieceSent { link } => self.feed(Input::PieceSent { link }),
        }
    }

    fn bytes_done(&self) -> u64 {
        match self.swarm.manifest() {
            Some(m) => m.layout().bytes_in(self.swarm.have()),
            None => 0,
        }
    }

    /// Bytes per second over the last second of `window`, after adding `(now, total)`.
    fn rate(window: &mut VecDeque<(Instant, u64)>, now: Instant, total: u64) -> f64 {
        window.push_back((now, total));
        while window
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_millis(1100))
        {
            window.pop_front();
        }
        match (window.front(), window.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                (b1 - b0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Nodes with at least one open link.
    fn peer_count(&self) -> usize {
        self.links
            .values()
            .map(|l| l.peer)
            .collect::<std::collections::HashSet<_>>()
            .len()
    }

    /// A share's upload event, when something changed since the last one.
    fn report_uploads(&mut self) {
        let now = Instant::now();
        let rate = Self::rate(&mut self.rate_window, now, self.sent_bytes);
        let peers = self.peer_count();
        let report = (self.sent_bytes, peers);
        if report == self.last_upload_report && rate == 0.0 {
            return;
        }
        self.last_upload_report = report;
        let _ = self
            .spec
            .events
            .try_send(NodeEvent::UploadProgress(UploadProgress {
                info_hash: self.spec.info_hash,
                peers,
                sent_bytes: self.sent_bytes,
                rate_bytes_per_sec: rate,
                peers_served: self.served.len(),
            }));
    }

    fn on_tick(&mut self) {
        let bytes_done = self.bytes_done();
        let peers = self.peer_count();
        let Role::Download(d) = &mut self.role else {
            return self.report_uploads();
        };
        let now = Instant::now();
        let rate = Self::rate(&mut self.rate_window, now, d.fetched_bytes);
        let upload_rate = Self::rate(&mut self.upload_window, now, self.sent_bytes);
        let len_bytes = self
            .swarm
            .manifest()
            .map(|m| m.layout().len_bytes())
            .unwrap_or(d.len_bytes);
        let progress = DownloadProgress {
            transfer: d.transfer,
            info_hash: self.spec.info_hash,
            name: d.name.clone(),
            bytes_done,
            len_bytes,
            rate_bytes_per_sec: rate,
            peers,
            sent_bytes: self.sent_bytes,
            upload_rate_bytes_per_sec: upload_rate,
            peers_served: self.served.len(),
        };
        let linked: std::collections::HashSet<NodeId> =
            self.links.values().map(|l| l.peer).collect();
        let event = NodeEvent::DownloadProgress(progress);
        d.status.send_modify(|s| {
            s.apply(&event);
            s.peers.retain(|p| linked.contains(&p.peer));
        });
        let _ = self.spec.events.try_send(event);
        if d.resume_dirty && now.duration_since(d.last_resume_save) >= RESUME_INTERVAL {
            d.save_resume();
        }
    }

    /// A completed download that stays served: moves the file to its final name, tells
    /// `Completed`, and goes on as a share of that file with the same swarm and links (peers
    /// fetching from this node lose nothing). The actor hears `Seeding` and makes it a share.
    /// On failure sets the outcome that ends the task.
    async fn become_seed(&mut self) {
        let Role::Download(d) = &mut self.role else {
            return;
        };
        let path = match d.finish_file().await {
            Ok(path) => path,
            Err(reason) => {
                self.outcome = Some(Outcome::Failed(FailureCause::Storage, reason));
                return;
            }
        };
        let transfer = d.transfer;
        let info_hash = self.spec.info_hash;
        let _ = self.spec.internal.send(Internal::Finished {
            info_hash,
            path: path.clone(),
        });
        let event = d.completed(info_hash, path.clone(), self.started);
        d.status.send_modify(|s| s.apply(&event));
        let _ = self.spec.events.send(event).await;
        let Some(manifest) = self.swarm.manifest().cloned() else {
            self.outcome = Some(Outcome::Told(path));
            return;
        };
        let len_bytes = manifest.layout().len_bytes();
        let cache = d.hash_cache.clone().map(shoal_storage::HashCache::new);
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let source = SourceFile::open(&path, &manifest)?;
                if let Some(cache) = cache {
                    // The stamp of the file just verified piece by piece: sharing it again
                    // at the next start reads nothing.
                    let stamp = std::fs::metadata(&path)
                        .map(|m| shoal_storage::FileStamp::of(&m))
                        .map_err(|e| shoal_storage::StorageError::io(&path, e))?;
                    if let Err(e) = cache.put(&path, stamp, &manifest) {
                        warn!(error = %e, "cannot remember the manifest of a finished download");
                    }
                }
                let mime = crate::media_type::media_type(&path);
                Ok::<_, shoal_storage::StorageError>((source, mime))
            })
            .await
        };
        match opened {
            Ok(Ok((source, mime))) => {
                self.role = Role::Seed {
                    source: Arc::new(source),
                };
                self.rate_window.clear();
                let _ = self.spec.internal.send(Internal::Seeding {
                    transfer,
                    info_hash,
                    path,
                    mime,
                    len_bytes,
                });
            }
            Ok(Err(e)) => self.end_after_completion(path, e.to_string()),
            Err(e) => self.end_after_completion(path, e.to_string()),
        }
    }

    /// The finished file cannot be served: the download is done (and told), the task ends.
    fn end_after_completion(&mut self, path: PathBuf, reason: String) {
        warn!(path = %path.display(), %reason, "the finished file cannot be shared");
        self.outcome = Some(Outcome::Told(path));
    }

    async fn finish(mut self, outcome: Outcome) {
        if matches!(self.role, Role::Seed { .. }) {
            // The last word on what it sent (the periodic one may be a second old).
            self.report_uploads();
        }
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for id in ids {
            self.remove_link(id, None);
        }
        let info_hash = self.spec.info_hash;
        let transfer = self.role.transfer();
        let ended = |error: Option<String>, path: Option<PathBuf>| match transfer {
            Some(transfer) => SwarmEnded::Download {
                info_hash,
                transfer,
                path,
            },
            None => SwarmEnded::Share { info_hash, error },
        };
        if let Outcome::Told(path) = outcome {
            let _ = self
                .spec
                .internal
                .send(Internal::SwarmEnded(ended(None, Some(path))));
            return;
        }
        let result: Option<Result<PathBuf, (FailureCause, String)>> =
            match (outcome, &mut self.role) {
                (Outcome::Told(_), _) => None,
                (Outcome::Completed, Role::Download(d)) => Some(
                    d.finish_file()
                        .await
                        .map_err(|reason| (FailureCause::Storage, reason)),
                ),
                (Outcome::Completed | Outcome::Stopped, role) => {
                    if let Role::Download(d) = role {
                        d.save_resume();
                    }
                    None
                }
                (Outcome::Failed(cause, reason), role) => {
                    if let Role::Download(d) = role {
                        d.save_resume();
                    }
                    Some(Err((cause, reason)))
                }
            };
        if let Role::Download(d) = &self.role {
            let why = match &result {
                Some(Err((_, reason))) => Some(reason.clone()),
                None => Some("stopped".to_owned()),
                Some(Ok(_)) => None,
            };
            if why.is_some() {
                d.stream.send_modify(|s| s.ended = why);
            }
            if result.is_none() {
                d.status.send_modify(|s| s.end(TransferPhase::Stopped));
            }
        }
        if let (Role::Download(d), Some(result)) = (&mut self.role, &result) {
            let transfer = d.transfer;
            let event = match result {
                Ok(path) => d.completed(info_hash, path.clone(), self.started),
                Err((cause, reason)) => NodeEvent::Failed {
                    transfer,
                    info_hash,
                    reason: reason.clone(),
                    cause: cause.clone(),
                },
            };
            d.status.send_modify(|s| s.apply(&event));
            let _ = self.spec.events.send(event).await;
        }
        let (path, error) = match result {
            Some(Ok(path)) => (Some(path), None),
            Some(Err((_, reason))) => (None, Some(reason)),
            None => (None, None),
        };
        let _ = self
            .spec
            .internal
            .send(Internal::SwarmEnded(ended(error, path)));
    }
}

impl Download {
    /// The `Completed` event, with the figures.
    fn completed(&mut self, info_hash: InfoHash, path: PathBuf, started: Instant) -> NodeEvent {
        info!(transfer = %self.transfer, path = %path.display(), "download complete");
        let mut per_peer: Vec<(NodeId, u64)> = self.per_peer.drain().collect();
        per_peer.sort();
        NodeEvent::Completed {
            transfer: self.transfer,
            info_hash,
            path,
            summary: TransferSummary {
                resumed_bytes: self.resumed_bytes,
                fetched_bytes: self.fetched_bytes,
                per_peer_bytes: per_peer,
                elapsed: started.elapsed(),
            },
        }
    }

    fn save_resume(&mut self) {
        if let Some(part) = &mut self.part {
            match part.save_resume() {
                Ok(()) => self.resume_dirty = false,
                Err(e) => warn!(error = %e, "cannot save the resume file"),
            }
        }
        self.last_resume_save = Instant::now();
    }

    /// Moves the verified `.part` file to its final name (fsync and rename off the task).
    async fn finish_file(&mut self) -> Result<PathBuf, String> {
        match self.part.take() {
            Some(part) => tokio::task::spawn_blocking(move || part.finish())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            None => Err("download finished without a file".into()),
        }
    }
}
