//! The app's state around one [`NodeHandle`]: settings, the embedded server, what the UI
//! shows (shares, hashing, transfers, log), the UI's event channels, and the pump that turns
//! node events into UI events.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use shoal_node::{
    ConnectionState, FailureCause, InfoHash, Node, NodeConfig, NodeError, NodeEvent, NodeHandle,
    RtcConfig, TransferId, TransferStatus,
};
use tauri::ipc::Channel;
use tauri::{AppHandle, Emitter};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::mpsc;

use crate::downloads::Download;
use crate::dto::{
    AppState, Connection, Hashing, HostingInfo, HostingProblem, LogEntry, PieceMap, Problem, Share,
    TransferState, UiError, UiEvent, Upload, Watch,
};
use crate::hosting::Hosting;
use crate::library::{Library, RememberedShare, RememberedTransfer};
use crate::settings::{Dirs, Settings};

/// Most log entries kept.
const LOG_LINES: usize = 500;

/// The Tauri event that carries rare notices (docs/app-ipc.md).
const NOTICE_EVENT: &str = "shoal://notice";

/// What the UI shows; kept here so a reloaded window gets it back from `app_state`.
struct View {
    connection: Connection,
    hosting: Option<HostingInfo>,
    hosting_problem: Option<HostingProblem>,
    shares: BTreeMap<InfoHash, Share>,
    hashing: BTreeMap<PathBuf, Hashing>,
    /// By the app's transfer id, which outlives node restarts and app runs: what the app
    /// keeps of each; their figures are the node's.
    transfers: BTreeMap<u64, Download>,
    /// Downloads being started or resumed: the app id their run gets.
    starting: HashMap<InfoHash, u64>,
    /// The shares remembered between runs (`shares.json`), re-shared at start and when the
    /// node restarts.
    remembered: Vec<RememberedShare>,
    /// The path each content of the current node was shared from, and by which call of
    /// `share_one` (a second share of the same content is refused with the first's name).
    sharing: HashMap<InfoHash, (PathBuf, u64)>,
    log: VecDeque<LogEntry>,
    channels: Vec<Channel<UiEvent>>,
}

struct Inner {
    settings: Settings,
    node: NodeHandle,
    hosting: Option<Hosting>,
}

/// Shared app state, held in `tauri::State`.
pub struct AppCore {
    app: AppHandle,
    dirs: Dirs,
    library: Library,
    /// The next app transfer id.
    next_transfer: AtomicU64,
    view: Mutex<View>,
    inner: tokio::sync::Mutex<Inner>,
    /// Bumped at every node restart; a pump of an older node stops. Atomic so the pump never
    /// waits for `inner`, which a settings change holds while the old node shuts down (the
    /// old node may be waiting for its pump to take an event).
    generation: AtomicU64,
    /// The current node, for one-line commands without awaiting `inner`.
    node: Mutex<NodeHandle>,
    settings: Mutex<Settings>,
    /// Paths of the last drop on the window, from the window system's event; taken by the
    /// page's `share_dropped`.
    dropped: Mutex<Vec<PathBuf>>,
    /// The room this app is in (issue 11).
    room: Mutex<Option<crate::room::AppRoom>>,
    /// The room's live stream (issue 12).
    live: Mutex<Live>,
}

/// The room's live stream as this app knows it (issue 12).
#[derive(Debug, Default)]
struct Live {
    /// A member's: the host whose stream arrives now.
    from: Option<shoal_node::NodeId>,
    /// A member's: the node's `/live` URL.
    url: Option<String>,
    /// A member's: the codecs arriving, in words ("VP8 video").
    codecs: BTreeSet<&'static str>,
    /// The host's: what goes out, in words; `None` while not live.
    hosting: Option<String>,
}

impl Live {
    /// What a room tick says of it: the host's stream, or the one arriving.
    fn tick(&self, is_host: bool) -> Option<crate::dto::LiveTick> {
        if is_host {
            return self.hosting.as_ref().map(|summary| crate::dto::LiveTick {
                hosting: true,
                url: None,
                summary: summary.clone(),
            });
        }
        self.from?;
        // Video first.
        let mut codecs: Vec<&str> = self.codecs.iter().copied().collect();
        codecs.sort_by_key(|c| c.ends_with("audio"));
        Some(crate::dto::LiveTick {
            hosting: false,
            url: self.url.clone(),
            summary: codecs.join(", "),
        })
    }
}

/// A codec in words, as the room shows it.
fn codec_words(codec: &shoal_node::MediaCodec) -> &'static str {
    match codec {
        shoal_node::MediaCodec::H264 { .. } => "H.264 video",
        shoal_node::MediaCodec::Vp8 => "VP8 video",
        shoal_node::MediaCodec::Vp9 => "VP9 video",
        shoal_node::MediaCodec::Opus => "Opus audio",
    }
}

fn no_room() -> UiError {
    UiError::new("no_room", "You are not in a room")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn node_config(settings: &Settings, server_url: String, dirs: &Dirs) -> NodeConfig {
    let limits = settings.transfer_limits();
    NodeConfig {
        share_completed: limits.share_completed,
        max_upload_bytes_per_sec: limits.max_upload_bytes_per_sec,
        max_download_bytes_per_sec: limits.max_download_bytes_per_sec,
        server_url,
        rtc: RtcConfig {
            ice_servers: settings.ice_servers(),
            ..RtcConfig::every_interface()
        },
        download_dir: settings.download_dir.clone(),
        agent: format!("shoal-app/{}", env!("CARGO_PKG_VERSION")),
        hash_cache: Some(dirs.cache.join("hash-cache")),
        ..NodeConfig::default()
    }
}

impl AppCore {
    /// Loads settings and what the app remembers, starts the embedded server if hosting, and
    /// starts the node. Remembered shares whose files are there are shared again (the hash
    /// cache makes that cheap), the others are listed as missing; unfinished downloads wait
    /// for the server and resume by themselves.
    pub async fn start(app: AppHandle, dirs: Dirs) -> Arc<Self> {
        let settings = Settings::load(&dirs.config);
        let library = Library::new(&dirs.data);
        let remembered = library.shares();
        let remembered_transfers = library.transfers();
        let (hosting, hosting_problem) = start_hosting(&settings).await;
        let url = server_url(&settings, hosting.as_ref());
        let (node, events) = Node::spawn(node_config(&settings, url.clone(), &dirs));
        let next_transfer = remembered_transfers.iter().map(|t| t.id).max().unwrap_or(0) + 1;
        let mut transfers = BTreeMap::new();
        for remembered in &remembered_transfers {
            let mut d = Download::from_remembered(remembered);
            if crate::library::resumable(remembered) {
                d.state = TransferState::Waiting;
                d.problem = Some(Problem::NoServer);
                d.hold_or_release(settings.resume_downloads);
            }
            transfers.insert(d.id, d);
        }
        let mut shares = BTreeMap::new();
        let mut present = Vec::new();
        for r in &remembered {
            if r.path.is_file() {
                present.push(r.path.clone());
            } else if let Ok(info_hash) = r.info_hash.parse::<InfoHash>() {
                shares.insert(info_hash, missing_share(r));
            }
        }
        let core = Arc::new(Self {
            app,
            dirs,
            library,
            next_transfer: AtomicU64::new(next_transfer),
            view: Mutex::new(View {
                connection: Connection::Connecting { url },
                hosting: hosting.as_ref().map(hosting_info),
                hosting_problem: hosting_problem.clone(),
                shares,
                hashing: BTreeMap::new(),
                transfers,
                starting: HashMap::new(),
                remembered,
                sharing: HashMap::new(),
                log: VecDeque::new(),
                channels: Vec::new(),
            }),
            inner: tokio::sync::Mutex::new(Inner {
                settings: settings.clone(),
                node: node.clone(),
                hosting,
            }),
            node: Mutex::new(node),
            settings: Mutex::new(settings),
            generation: AtomicU64::new(0),
            dropped: Mutex::new(Vec::new()),
            room: Mutex::new(None),
            live: Mutex::new(Live::default()),
        });
        core.log("info", "Shoal started");
        if let Some(problem) = hosting_problem {
            core.log("error", problem.message);
        }
        tauri::async_runtime::spawn(pump(core.clone(), events, 0));
        tauri::async_runtime::spawn(live_pump(core.clone(), core.node(), 0));
        core.share_paths(present);
        core
    }

    /// A new app transfer id.
    fn next_transfer_id(&self) -> u64 {
        self.next_transfer.fetch_add(1, Ordering::SeqCst)
    }

    fn save_shares(&self, view: &View) {
        if let Err(e) = self.library.save_shares(&view.remembered) {
            tracing::warn!("{e}");
        }
    }

    fn save_transfers(&self, view: &View) {
        let node = self.node();
        let list: Vec<RememberedTransfer> = view
            .transfers
            .values()
            .map(|d| d.remembered(&node))
            .collect();
        if let Err(e) = self.library.save_transfers(&list) {
            tracing::warn!("{e}");
        }
    }

    /// Starts a download into the configured folder; answers the app's transfer id.
    ///
    /// # Errors
    /// What the node refused (unknown content, no holder, not connected...).
    pub async fn download(self: &Arc<Self>, info_hash: InfoHash) -> Result<u64, UiError> {
        let id = self.next_transfer_id();
        let dir = self.settings().download_dir;
        Ok(self.start_download(id, info_hash, dir).await?)
    }

    /// Asks the node to download (or resume) `info_hash` as the app's transfer `id`.
    async fn start_download(
        self: &Arc<Self>,
        id: u64,
        info_hash: InfoHash,
        dir: PathBuf,
    ) -> Result<u64, NodeError> {
        let (node, generation) = {
            let mut view = lock(&self.view);
            view.starting.insert(info_hash, id);
            (self.node(), self.generation())
        };
        let result = node.download(info_hash, Some(dir)).await;
        let mut view = lock(&self.view);
        if self.generation() != generation {
            // The node was replaced meanwhile (settings): its answer names a run of a node
            // that is gone. The download waits for the new node, which resumes it.
            if let Ok(status) = &result
                && !view.transfers.contains_key(&id)
            {
                let mut d = Download::started(id, status);
                d.run = None;
                d.state = TransferState::Waiting;
                d.problem = Some(Problem::NoServer);
                view.transfers.insert(id, d);
                self.emit_card(&mut view, id);
                self.save_transfers(&view);
            }
            return result.map(|_| id);
        }
        view.starting.remove(&info_hash);
        match result {
            Ok(status) => {
                self.adopt_run(&mut view, id, &status);
                Ok(id)
            }
            Err(e) => {
                if let Some(d) = view.transfers.get_mut(&id)
                    && d.state == TransferState::Waiting
                {
                    match waiting_reason(&e) {
                        Some(problem) => d.problem = Some(problem),
                        None => {
                            d.state = TransferState::Failed;
                            d.problem = Some(Problem::Other {
                                message: e.to_string(),
                            });
                        }
                    }
                    self.emit_card(&mut view, id);
                    self.save_transfers(&view);
                }
                Err(e)
            }
        }
    }

    /// The node runs the app's download `id` as `status` (its answer to `download`, or its
    /// `DownloadStarted`, whichever the app hears first): the card shows it running.
    fn adopt_run(&self, view: &mut View, id: u64, status: &TransferStatus) {
        if view
            .transfers
            .get(&id)
            .is_some_and(|d| d.run == Some(status.transfer()))
        {
            return;
        }
        Self::take_run(view, id, status);
        self.emit_card(view, id);
        self.save_transfers(view);
    }

    /// Download `id` (a new card if there is none) runs as `status` now.
    fn take_run(view: &mut View, id: u64, status: &TransferStatus) {
        match view.transfers.get_mut(&id) {
            Some(d) => d.adopt(status),
            None => {
                view.transfers.insert(id, Download::started(id, status));
            }
        }
    }

    /// The app's download running as the node's `transfer`.
    fn by_run(view: &View, transfer: TransferId) -> Option<u64> {
        view.transfers
            .values()
            .find(|d| d.run == Some(transfer))
            .map(|d| d.id)
    }

    /// The app's download of the node's `transfer`: the one running it, or the one being
    /// started for its content, which gets the run now (the node's answer to `download` may
    /// come after the run's first events, even after it failed: a folder that cannot be
    /// written fails at once).
    fn download_of(
        &self,
        view: &mut View,
        transfer: TransferId,
        info_hash: InfoHash,
    ) -> Option<u64> {
        if let Some(id) = Self::by_run(view, transfer) {
            return Some(id);
        }
        let id = *view.starting.get(&info_hash)?;
        let status = self.node().transfer(transfer).ok()?;
        Self::take_run(view, id, &status);
        Some(id)
    }

    /// Tells the UI the card of download `id` now.
    fn emit_card(&self, view: &mut View, id: u64) {
        if let Some(transfer) = view.transfers.get(&id).map(|d| d.card(&self.node())) {
            self.emit(view, UiEvent::Transfer { transfer });
        }
    }

    /// Tries every waiting download again (at start, on reconnection, when the index
    /// changes), unless the user turned resuming off.
    fn resume_waiting(self: &Arc<Self>) {
        if !self.settings().resume_downloads {
            return;
        }
        let waiting: Vec<(u64, InfoHash, PathBuf)> = {
            let mut view = lock(&self.view);
            let candidates: Vec<(u64, InfoHash, PathBuf)> = view
                .transfers
                .values()
                .filter(|d| d.state == TransferState::Waiting)
                .filter_map(|d| {
                    let info_hash = d.info_hash.parse::<InfoHash>().ok()?;
                    Some((d.id, info_hash, d.out_dir.clone()))
                })
                .filter(|(_, h, _)| !view.starting.contains_key(h))
                .collect();
            // Marked now, so a second call before the first answer starts nothing twice.
            for (id, info_hash, _) in &candidates {
                view.starting.insert(*info_hash, *id);
            }
            candidates
        };
        for (id, info_hash, dir) in waiting {
            let core = self.clone();
            tauri::async_runtime::spawn(async move {
                let _ = core.start_download(id, info_hash, dir).await;
            });
        }
    }

    /// Cancels a running download (its .part file stays) or a waiting one.
    ///
    /// # Errors
    /// Unknown transfer, or the node stopped.
    pub async fn cancel(&self, id: u64) -> Result<(), UiError> {
        let running = lock(&self.view)
            .transfers
            .get(&id)
            .filter(|d| d.state == TransferState::Running)
            .and_then(|d| d.run);
        if let Some(transfer) = running {
            return Ok(self.node().cancel(transfer).await?);
        }
        let mut view = lock(&self.view);
        let Some(d) = view.transfers.get_mut(&id) else {
            return Err(UiError::new("unknown_transfer", "No such download"));
        };
        if d.state == TransferState::Waiting {
            d.state = TransferState::Cancelled;
            d.problem = None;
            self.emit_card(&mut view, id);
            self.save_transfers(&view);
        }
        Ok(())
    }

    /// Starts a failed or cancelled download again as the same transfer (same card): it
    /// resumes from its `.part` file, or waits for its sharer.
    ///
    /// # Errors
    /// Unknown transfer, one that is not failed or cancelled, or what the node refused.
    pub async fn retry(self: &Arc<Self>, id: u64) -> Result<u64, UiError> {
        let (info_hash, dir) = {
            let mut view = lock(&self.view);
            let Some(d) = view.transfers.get_mut(&id) else {
                return Err(UiError::new("unknown_transfer", "No such download"));
            };
            if !matches!(d.state, TransferState::Failed | TransferState::Cancelled) {
                return Err(UiError::new(
                    "unknown_transfer",
                    "Only a failed or cancelled download can be tried again",
                ));
            }
            let info_hash = d
                .info_hash
                .parse::<InfoHash>()
                .map_err(|e| UiError::new("internal", e.to_string()))?;
            d.state = TransferState::Waiting;
            d.problem = Some(Problem::NoServer);
            let dir = d.out_dir.clone();
            self.emit_card(&mut view, id);
            (info_hash, dir)
        };
        match self.start_download(id, info_hash, dir).await {
            Ok(id) => Ok(id),
            // It waits for its sharer and resumes by itself; the card says so.
            Err(e) if waiting_reason(&e).is_some() => Ok(id),
            Err(e) => Err(e.into()),
        }
    }

    /// Where the player reads `info_hash` (issue 10, item 4): the file itself when it is
    /// here (a share or a finished download); else the stream of its download, which this
    /// starts, resumes, or joins when it runs already.
    ///
    /// # Errors
    /// What the node refused (unknown content, no holder, not connected...).
    pub async fn watch(self: &Arc<Self>, info_hash: InfoHash) -> Result<Watch, UiError> {
        let hex = info_hash.to_string();
        let (local, existing) = {
            let view = lock(&self.view);
            let local = view
                .shares
                .get(&info_hash)
                .filter(|s| s.missing.is_none())
                .map(|s| s.path.clone())
                .or_else(|| {
                    view.transfers
                        .values()
                        .filter(|d| d.info_hash == hex && d.state == TransferState::Completed)
                        .find_map(|d| d.path.clone().filter(|p| p.is_file()))
                });
            let existing = view
                .transfers
                .values()
                .rev()
                .find(|d| d.info_hash == hex && d.state != TransferState::Completed)
                .map(|d| (d.id, d.state));
            (local, existing)
        };
        if let Some(path) = local {
            let url = self.node().media_url(path.clone()).await?;
            return Ok(Watch {
                url,
                transfer: None,
                path: Some(path),
            });
        }
        let nobody_shares = || {
            UiError::new(
                "no_holders",
                "Nobody shares this file right now; its download starts by itself when a sharer comes back",
            )
        };
        let id = match existing {
            Some((id, TransferState::Running)) => id,
            Some((id, TransferState::Failed | TransferState::Cancelled)) => self.retry(id).await?,
            // Waiting for its sharer: it starts by itself when one comes back.
            Some((_, TransferState::Waiting)) => return Err(nobody_shares()),
            _ => self.download(info_hash).await?,
        };
        let transfer = self.node_transfer(id).ok_or_else(nobody_shares)?;
        let url = self.node().stream_url(transfer).await?;
        Ok(Watch {
            url,
            transfer: Some(id),
            path: None,
        })
    }

    /// The node's id of the app's transfer `id` in its latest run (a retry is a new run).
    fn node_transfer(&self, id: u64) -> Option<TransferId> {
        lock(&self.view).transfers.get(&id).and_then(|d| d.run)
    }

    /// Which bytes of the app's transfer `id` are here, on their way or missing; a finished
    /// download is all here.
    ///
    /// # Errors
    /// `unknown_transfer` for a transfer that is neither running nor finished.
    pub async fn piece_map(&self, id: u64) -> Result<PieceMap, UiError> {
        if let Some(transfer) = self.node_transfer(id) {
            match self.node().piece_map(transfer).await {
                Ok(map) => return Ok(map.into()),
                // It finished in between.
                Err(NodeError::UnknownTransfer(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let view = lock(&self.view);
        match view.transfers.get(&id) {
            Some(d) if d.state == TransferState::Completed => {
                Ok(shoal_node::PieceMap::complete(d.len_bytes).into())
            }
            Some(d) => Ok(shoal_node::PieceMap {
                len_bytes: d.len_bytes,
                ..shoal_node::PieceMap::default()
            }
            .into()),
            None => Err(UiError::new("unknown_transfer", "No such download")),
        }
    }

    /// Hosts on `port` (turning the host switch on): the header's "Host on port N".
    ///
    /// # Errors
    /// As [`AppCore::apply_settings`]: the port is taken too, or settings cannot be saved.
    pub async fn host_on_port(self: &Arc<Self>, port: u16) -> Result<AppState, UiError> {
        let settings = Settings {
            host: true,
            host_port: port,
            ..self.settings()
        };
        self.apply_settings(settings).await
    }

    /// Forgets finished, failed and cancelled downloads (their files stay), here and in
    /// the node.
    pub fn clear_finished(&self) {
        let node = self.node();
        let mut view = lock(&self.view);
        let done: Vec<u64> = view
            .transfers
            .values()
            .filter(|d| {
                matches!(
                    d.state,
                    TransferState::Completed | TransferState::Failed | TransferState::Cancelled
                )
            })
            .map(|d| d.id)
            .collect();
        for id in done {
            if let Some(run) = view.transfers.remove(&id).and_then(|d| d.run) {
                node.forget_transfer(run);
            }
        }
        self.save_transfers(&view);
    }

    /// Opens a room watching a file, as its host: one this app shares, or one on the
    /// network (its download starts, as `watch`). Leaves any other room.
    ///
    /// # Errors
    /// `unknown_file` when the file is neither shared here nor on the network; the node's
    /// errors; `watch`'s.
    pub async fn create_room(
        self: &Arc<Self>,
        info_hash: InfoHash,
    ) -> Result<crate::dto::Room, UiError> {
        let shared = lock(&self.view)
            .shares
            .get(&info_hash)
            .filter(|s| s.missing.is_none())
            .map(|s| s.name.clone());
        let node = self.node();
        // A file of one's own, or one on the network: the host then watches it while it
        // downloads, and the room waits for the host's player like a member's.
        let name = match shared {
            Some(name) => name,
            None => match node.lookup(info_hash).await? {
                Some(file) => shoal_node::text::inert(&file.name, 255).into_owned(),
                None => {
                    return Err(UiError::new(
                        "unknown_file",
                        "Nobody on the network shares this file now: share it, or pick one \
                         from the Network list",
                    ));
                }
            },
        };
        self.leave_room().await;
        let info = node.create_room(info_hash).await?;
        let (me, watch) = self.start_watching(&node, &info).await?;
        let dto = crate::dto::Room {
            code: info.code.clone(),
            link: info.link.clone(),
            info_hash: info_hash.to_string(),
            name,
            is_host: true,
            watch,
        };
        *lock(&self.room) = Some(crate::room::AppRoom::host(
            &info,
            me,
            node.clock_ms(),
            dto.clone(),
        ));
        self.log("info", format!("Room {} opened", info.code));
        Ok(dto)
    }

    /// Joins a room by code or link as a member and starts watching its media; leaves any
    /// other room.
    ///
    /// # Errors
    /// The server's refusal (unknown room, too many attempts); the node's errors; `watch`'s.
    pub async fn join_room(self: &Arc<Self>, room: &str) -> Result<crate::dto::Room, UiError> {
        self.leave_room().await;
        let node = self.node();
        let info = node.join_room(room.trim(), None).await?;
        let name = match node.lookup(info.info_hash).await {
            Ok(Some(file)) => file.name,
            _ => info.info_hash.short(),
        };
        let (me, watch) = self.start_watching(&node, &info).await?;
        let dto = crate::dto::Room {
            code: info.code.clone(),
            link: info.link.clone(),
            info_hash: info.info_hash.to_string(),
            name: shoal_node::text::inert(&name, 255).into_owned(),
            is_host: false,
            watch,
        };
        *lock(&self.room) = Some(crate::room::AppRoom::member(
            &info,
            me,
            node.clock_ms(),
            dto.clone(),
        ));
        self.log("info", format!("Joined room {}", info.code));
        Ok(dto)
    }

    /// This node's id and the room's media as `watch` opens it, for a room the server just
    /// opened or joined: a failure leaves the room again (as its host: ends it).
    async fn start_watching(
        self: &Arc<Self>,
        node: &NodeHandle,
        info: &shoal_node::RoomInfo,
    ) -> Result<(Option<shoal_node::NodeId>, Watch), UiError> {
        let started =
            async { Ok::<_, UiError>((node.node_id().await?, self.watch(info.info_hash).await?)) };
        match started.await {
            Ok(started) => Ok(started),
            Err(e) => {
                let _ = node.leave_room(&info.code).await;
                Err(e)
            }
        }
    }

    /// Leaves the room (as its host: ends it, and its live stream).
    pub async fn leave_room(&self) {
        if lock(&self.live).hosting.take().is_some() {
            let _ = self.node().stop_live().await;
        }
        let room = lock(&self.room).take();
        if let Some(room) = room
            && let Err(e) = self.node().leave_room(room.code()).await
        {
            tracing::info!("leaving room {}: {e}", room.code());
        }
    }

    /// The host streams the room's file live to every member (issue 12), over and over
    /// until [`AppCore::stop_live`]; answers what goes out, in words.
    ///
    /// # Errors
    /// `no_room`; `not_host` for a member; `not_shared` when the room's file is not one this
    /// app shares (a room opened from the network list); the node's refusal of the file
    /// (not MP4/WebM, no H.264/VP8/VP9/Opus track).
    pub async fn go_live(&self) -> Result<String, UiError> {
        let (code, info_hash) = {
            let room = lock(&self.room);
            let room = room.as_ref().ok_or_else(no_room)?;
            if !room.info.is_host {
                return Err(UiError::new("not_host", "Only the room's host can go live"));
            }
            (room.code().to_owned(), room.info.info_hash.clone())
        };
        let path = info_hash
            .parse::<InfoHash>()
            .ok()
            .and_then(|h| lock(&self.view).sharing.get(&h).map(|(p, _)| p.clone()))
            .ok_or_else(|| {
                UiError::new(
                    "not_shared",
                    "Only a file this app shares can go live: share it, then open the room \
                     from your Shared list",
                )
            })?;
        let info = self.node().go_live(&code, path, true).await?;
        let mut summary = info
            .codecs
            .iter()
            .map(codec_words)
            .collect::<Vec<_>>()
            .join(", ");
        if !info.skipped.is_empty() {
            summary.push_str(&format!(" ({})", info.skipped.join("; ")));
        }
        lock(&self.live).hosting = Some(summary.clone());
        self.log("info", format!("Live in room {code}: {summary}"));
        Ok(summary)
    }

    /// Stops the host's live stream.
    ///
    /// # Errors
    /// The node's (it stopped).
    pub async fn stop_live(&self) -> Result<(), UiError> {
        if lock(&self.live).hosting.take().is_some() {
            self.node().stop_live().await?;
            self.log("info", "Live stream stopped");
        }
        Ok(())
    }

    /// The room this app is in.
    pub fn current_room(&self) -> Option<crate::dto::Room> {
        lock(&self.room).as_ref().map(|r| r.info.clone())
    }

    /// The host's Play, Pause, seek or go-on.
    ///
    /// # Errors
    /// `no_room`, `not_host`, `bad_request`.
    pub fn room_control(&self, action: &str, position_ms: Option<f64>) -> Result<(), UiError> {
        // What the command sends goes out with the player's next tick (within 100 ms).
        let now = self.node().clock_ms();
        let mut room = lock(&self.room);
        room.as_mut()
            .ok_or_else(no_room)?
            .control(action, position_ms, now)
    }

    /// One step of the room's player (about ten times a second).
    ///
    /// # Errors
    /// `no_room`.
    pub async fn room_tick(
        &self,
        player: crate::dto::PlayerReport,
    ) -> Result<crate::dto::RoomTick, UiError> {
        let node = self.node();
        let name = Some(self.settings().display_name).filter(|n| !n.is_empty());
        let (transfer, may_estimate) = {
            let mut room = lock(&self.room);
            let room = room.as_mut().ok_or_else(no_room)?;
            (room.info.watch.transfer, room.may_estimate_ready(&player))
        };
        let progress = match transfer {
            None => 1.0,
            Some(id) => lock(&self.view).transfers.get(&id).map_or(0.0, |d| {
                if d.state == TransferState::Completed {
                    1.0
                } else {
                    let t = d.card(&node);
                    t.bytes_done as f64 / t.len_bytes.max(1) as f64
                }
            }),
        };
        // A player with every byte on disk is not waiting for the network: WebKit's
        // `buffered` can stay short of 2 s on a paused frame, and a room that waited for it
        // while keeping it paused would wait until the timeout.
        let mut player = player;
        if progress >= 1.0 {
            player.ready = true;
        } else if may_estimate
            && !player.ready
            && !player.playing
            && !player.seeking
            && let Some(transfer) = transfer.and_then(|id| self.node_transfer(id))
            && let Ok(map) = node.piece_map(transfer).await
        {
            // Nor is a paused one whose next seconds are here by the file's average
            // bitrate (twice the player's own 2 s, for a bitrate that varies); once it plays
            // and runs dry it says so again.
            player.ready = map
                .covers_secs(player.position_ms / 1000.0, 4.0)
                .unwrap_or(false);
        }
        let (mut tick, out, code, is_host) = {
            let mut room = lock(&self.room);
            let room = room.as_mut().ok_or_else(no_room)?;
            let (tick, out) = room.tick(&player, progress, name, node.clock_ms());
            (tick, out, room.code().to_owned(), room.info.is_host)
        };
        tick.live = lock(&self.live).tick(is_host);
        crate::room::send_all(&node, &code, out).await;
        Ok(tick)
    }

    /// The current node.
    pub fn node(&self) -> NodeHandle {
        lock(&self.node).clone()
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// A snapshot for `app_state`.
    pub fn snapshot(&self) -> AppState {
        let node = self.node();
        let view = lock(&self.view);
        AppState {
            settings: self.settings(),
            connection: view.connection.clone(),
            hosting: view.hosting.clone(),
            hosting_problem: view.hosting_problem.clone(),
            shares: view.shares.values().cloned().collect(),
            hashing: view.hashing.values().cloned().collect(),
            transfers: view
                .transfers
                .values()
                .rev()
                .map(|d| d.card(&node))
                .collect(),
            log: view.log.iter().cloned().collect(),
        }
    }

    /// Adds a UI channel; events go to every channel still open.
    pub fn subscribe(&self, channel: Channel<UiEvent>) {
        lock(&self.view).channels.push(channel);
    }

    /// Frequent updates (hashing, transfer progress) go through the UI's Channels; rare
    /// notices as the Tauri event `shoal://notice` (Tauri's advice: channels for streams,
    /// events for the rest).
    fn emit(&self, view: &mut View, event: UiEvent) {
        if matches!(
            event,
            UiEvent::Hashing { .. } | UiEvent::Transfer { .. } | UiEvent::Upload { .. }
        ) {
            view.channels.retain(|c| c.send(event.clone()).is_ok());
        } else if let Err(e) = self.app.emit(NOTICE_EVENT, event) {
            tracing::debug!(error = %e, "cannot emit a notice");
        }
    }

    /// Adds a log line and sends it to the UI.
    pub fn log(&self, level: &'static str, message: impl Into<String>) {
        let entry = LogEntry::new(level, message);
        match level {
            "error" => tracing::error!("{}", entry.message),
            "warn" => tracing::warn!("{}", entry.message),
            _ => tracing::info!("{}", entry.message),
        }
        let mut view = lock(&self.view);
        if view.log.len() >= LOG_LINES {
            view.log.pop_front();
        }
        view.log.push_back(entry.clone());
        self.emit(&mut view, UiEvent::Log { entry });
    }

    /// Records the paths of a drop on the window (from the window system, not the page).
    pub fn set_dropped(&self, paths: Vec<PathBuf>) {
        *lock(&self.dropped) = paths;
    }

    /// The paths of the last drop, once.
    pub fn take_dropped(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *lock(&self.dropped))
    }

    /// Logs `message` and shows it as a notice.
    pub fn notify(&self, level: &'static str, message: impl Into<String>) {
        let entry = LogEntry::new(level, message);
        self.log(level, entry.message.clone());
        let mut view = lock(&self.view);
        self.emit(&mut view, UiEvent::Notice { entry });
    }

    /// Shares files, and the files inside folders: hashing progress and the result arrive as
    /// events; failures are logged. A folder's files are shared one after the other.
    pub fn share_paths(self: &Arc<Self>, paths: Vec<PathBuf>) {
        for path in paths {
            let core = self.clone();
            if path.is_dir() {
                tauri::async_runtime::spawn(async move { core.share_folder(path).await });
            } else {
                tauri::async_runtime::spawn(async move { core.share_one(path).await });
            }
        }
    }

    /// Shares the regular files under `dir` (recursively; hidden entries and symbolic links
    /// are skipped), asking first when there are more than [`CONFIRM_FOLDER_FILES`].
    async fn share_folder(self: Arc<Self>, dir: PathBuf) {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let walk = dir.clone();
        let files = tauri::async_runtime::spawn_blocking(move || files_in(&walk))
            .await
            .unwrap_or_default();
        match files.len() {
            0 => {
                return self.notify("warn", format!("The folder “{name}” has no files to share"));
            }
            n if n > MAX_FOLDER_FILES => {
                return self.notify(
                    "error",
                    format!(
                        "The folder “{name}” holds more than {MAX_FOLDER_FILES} files; share a smaller folder"
                    ),
                );
            }
            n if n > CONFIRM_FOLDER_FILES => {
                let mut dialog = rfd::AsyncMessageDialog::new()
                    .set_title("Share a folder")
                    .set_description(format!("Share all {n} files in “{name}”?"))
                    .set_buttons(rfd::MessageButtons::OkCancel);
                if let Some(window) = tauri::Manager::get_webview_window(&self.app, "main") {
                    dialog = dialog.set_parent(&window);
                }
                if dialog.show().await != rfd::MessageDialogResult::Ok {
                    return;
                }
            }
            _ => {}
        }
        self.notify(
            "info",
            format!("Sharing {} files from “{name}”", files.len()),
        );
        for file in files {
            self.clone().share_one(file).await;
        }
    }

    async fn share_one(self: Arc<Self>, path: PathBuf) {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let name = file_name(&path);
        if !path.is_file() {
            self.log(
                "error",
                format!("Cannot share {}: only files can be shared", path.display()),
            );
            return;
        }
        {
            let mut view = lock(&self.view);
            let hashing = Hashing {
                path: path.clone(),
                name: name.clone(),
                bytes_done: 0,
                len_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            };
            view.hashing.insert(path.clone(), hashing.clone());
            self.emit(&mut view, UiEvent::Hashing { hashing });
        }
        let result = self.node().share(path.clone()).await;
        lock(&self.view).hashing.remove(&path);
        match result {
            Ok(shared) => {
                // The node answers a second share of the same content (the same file dropped
                // again, or a copy) with the first one: say so instead of sharing it twice.
                let duplicate = {
                    let mut view = lock(&self.view);
                    match view.sharing.get(&shared.info_hash) {
                        Some((first, by)) if *by != call => Some(first.clone()),
                        _ => {
                            view.sharing.insert(shared.info_hash, (path.clone(), call));
                            None
                        }
                    }
                };
                if let Some(first) = duplicate {
                    let first_name = file_name(&first);
                    let reason = if first_name == name {
                        format!("it is already shared from {}", first.display())
                    } else {
                        format!("the same content is already shared as “{first_name}”")
                    };
                    self.not_shared(&path, reason.clone());
                    self.log("info", format!("Not sharing {name} again: {reason}"));
                    return;
                }
                let changed = {
                    let mut view = lock(&self.view);
                    let entry = RememberedShare::from(&Share::from(&shared));
                    let changed = match view.remembered.iter().position(|r| r.path == path) {
                        Some(i) => {
                            let changed = view.remembered[i].info_hash != entry.info_hash;
                            view.remembered[i] = entry;
                            changed
                        }
                        None => {
                            view.remembered.push(entry);
                            false
                        }
                    };
                    self.save_shares(&view);
                    changed
                };
                if changed {
                    self.log(
                        "warn",
                        format!(
                            "{} changed since it was last shared; sharing its new content",
                            shared.name
                        ),
                    );
                } else {
                    self.log("info", format!("Sharing {}", shared.name));
                }
            }
            Err(e) => {
                self.not_shared(&path, e.to_string());
                self.log(
                    "error",
                    format!("Cannot share {name}: {}", UiError::from(e).message),
                );
            }
        }
    }

    /// Tells the page that sharing `path` ended before it was shared, and why.
    fn not_shared(&self, path: &std::path::Path, reason: String) {
        let mut view = lock(&self.view);
        self.emit(
            &mut view,
            UiEvent::Unshared {
                info_hash: String::new(),
                reason: Some(reason),
                path: Some(path.to_owned()),
            },
        );
    }

    /// Stops sharing.
    ///
    /// # Errors
    /// Not shared, or the node stopped.
    pub async fn unshare(&self, info_hash: InfoHash) -> Result<(), UiError> {
        let missing = lock(&self.view)
            .shares
            .get(&info_hash)
            .is_some_and(|s| s.missing.is_some());
        // A missing share is only remembered: forgetting it is all there is to do.
        if !missing {
            self.node().unshare(info_hash).await?;
        }
        let removed = {
            let mut view = lock(&self.view);
            let removed = view.shares.remove(&info_hash);
            view.sharing.remove(&info_hash);
            if let Some(share) = &removed {
                view.remembered.retain(|r| r.path != share.path);
                self.save_shares(&view);
            }
            self.emit(
                &mut view,
                UiEvent::Unshared {
                    info_hash: info_hash.to_string(),
                    reason: None,
                    path: None,
                },
            );
            removed
        };
        if let Some(share) = removed {
            self.log("info", format!("Stopped sharing {}", share.name));
        }
        Ok(())
    }

    /// Whether `path` is a share or a finished download (the only paths the UI may open).
    pub fn is_known_path(&self, path: &std::path::Path) -> bool {
        let view = lock(&self.view);
        view.shares.values().any(|s| s.path == path)
            || view
                .transfers
                .values()
                .any(|d| d.path.as_deref() == Some(path))
    }

    /// Validates, saves and applies new settings: restarts the node (and the embedded server
    /// if hosting changed), then shares the same files again.
    ///
    /// # Errors
    /// Invalid settings, or they cannot be saved.
    pub async fn apply_settings(self: &Arc<Self>, settings: Settings) -> Result<AppState, UiError> {
        settings.validate()?;
        let mut inner = self.inner.lock().await;
        // Hosting on a port another program holds would save settings that host nothing:
        // refuse before saving, and name a free port.
        let hosting_now = inner.hosting.as_ref().map(|h| h.listening().port());
        if settings.host
            && settings.host_port != 0
            && hosting_now != Some(settings.host_port)
            && let Err(e) = std::net::TcpListener::bind(("0.0.0.0", settings.host_port))
        {
            let port = settings.host_port;
            let message = match free_port_after(port) {
                Some(free) => format!(
                    "Port {port} cannot be used ({e}): another program, or another Shoal, holds it. Port {free} is free."
                ),
                None => format!(
                    "Port {port} cannot be used ({e}). Enter another port, or 0 for any free port."
                ),
            };
            return Err(UiError::new("settings", message));
        }
        // A new download folder must be usable (created if missing); an unchanged one is not
        // checked, so a folder on a drive that is away does not block other settings.
        if settings.download_dir != inner.settings.download_dir {
            let check = settings.clone();
            tauri::async_runtime::spawn_blocking(move || check.check_download_dir())
                .await
                .map_err(|e| UiError::new("settings", e.to_string()))??;
        }
        settings.save(&self.dirs.config)?;
        let old = inner.settings.clone();
        *lock(&self.settings) = settings.clone();
        inner.settings = settings.clone();
        {
            let mut view = lock(&self.view);
            self.emit(
                &mut view,
                UiEvent::Settings {
                    settings: settings.clone(),
                },
            );
        }
        let hosting_changed = old.host != settings.host || old.host_port != settings.host_port;
        let network_changed = hosting_changed
            || old.server_url != settings.server_url
            || old.stun_servers != settings.stun_servers
            || old.turn_servers != settings.turn_servers
            || old.download_dir != settings.download_dir;
        if old.resume_downloads != settings.resume_downloads {
            let mut view = lock(&self.view);
            let changed: Vec<u64> = view
                .transfers
                .values_mut()
                .filter_map(|d| d.hold_or_release(settings.resume_downloads).then_some(d.id))
                .collect();
            for id in changed {
                self.emit_card(&mut view, id);
            }
            self.save_transfers(&view);
        }
        if !network_changed && old.transfer_limits() != settings.transfer_limits() {
            // Applied at once; a node restart would cost every link.
            inner.node.set_limits(settings.transfer_limits()).await?;
        }
        if !network_changed {
            drop(inner);
            self.resume_waiting();
            return Ok(self.snapshot());
        }
        self.log("info", "Settings saved; reconnecting");
        inner.node.shutdown().await;
        if hosting_changed {
            if let Some(h) = inner.hosting.take() {
                h.stop().await;
            }
            let (hosting, problem) = start_hosting(&settings).await;
            inner.hosting = hosting;
            if let Some(problem) = &problem {
                self.log("error", problem.message.clone());
            }
            let info = inner.hosting.as_ref().map(hosting_info);
            let mut view = lock(&self.view);
            view.hosting = info.clone();
            view.hosting_problem = problem.clone();
            self.emit(
                &mut view,
                UiEvent::Hosting {
                    hosting: info,
                    problem,
                },
            );
        }
        let url = server_url(&settings, inner.hosting.as_ref());
        let old_node = inner.node.clone();
        let (node, events) = Node::spawn(node_config(&settings, url, &self.dirs));
        inner.node = node.clone();
        let (generation, paths) = {
            // Shares come back as they are re-announced; running transfers wait for the new
            // node and resume there. Under the view's lock, so no card is built or adopted
            // with one node's run id against the other node.
            let mut view = lock(&self.view);
            let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
            for d in view.transfers.values_mut() {
                d.leave_node(&old_node);
            }
            *lock(&self.node) = node;
            view.shares.retain(|_, s| s.missing.is_some());
            view.starting.clear();
            view.sharing.clear();
            let mut stopped = Vec::new();
            for d in view.transfers.values_mut() {
                if d.state == TransferState::Running {
                    d.state = TransferState::Waiting;
                    d.problem = Some(Problem::NoServer);
                    d.hold_or_release(settings.resume_downloads);
                    stopped.push(d.id);
                }
            }
            for id in stopped {
                self.emit_card(&mut view, id);
            }
            self.save_transfers(&view);
            let paths = view
                .remembered
                .iter()
                .filter(|r| r.path.is_file())
                .map(|r| r.path.clone())
                .collect::<Vec<_>>();
            (generation, paths)
        };
        tauri::async_runtime::spawn(pump(self.clone(), events, generation));
        *lock(&self.live) = Live::default();
        tauri::async_runtime::spawn(live_pump(self.clone(), self.node(), generation));
        drop(inner);
        self.share_paths(paths);
        Ok(self.snapshot())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn on_event(&self, event: NodeEvent) {
        let mut view = lock(&self.view);
        match event {
            NodeEvent::Connection(state) => {
                let line = match &state {
                    ConnectionState::Connecting { .. } => None,
                    ConnectionState::Connected { url, node_id } => {
                        Some(("info", format!("Connected to {url} as {}", node_id.short())))
                    }
                    ConnectionState::Disconnected {
                        url,
                        reason,
                        retry_in,
                    } => Some((
                        "warn",
                        format!(
                            "Lost {url} ({reason}); trying again in {} s",
                            retry_in.as_secs()
                        ),
                    )),
                };
                let connection = Connection::from(state);
                view.connection = connection.clone();
                self.emit(&mut view, UiEvent::Connection { connection });
                drop(view);
                if let Some((level, message)) = line {
                    self.log(level, message);
                }
            }
            NodeEvent::HashingProgress {
                path,
                bytes_done,
                len_bytes,
            } => {
                if let Some(h) = view.hashing.get_mut(&path) {
                    h.bytes_done = bytes_done;
                    h.len_bytes = len_bytes;
                    let hashing = h.clone();
                    self.emit(&mut view, UiEvent::Hashing { hashing });
                }
            }
            NodeEvent::Shared(file) => {
                let share = Share::from(&file);
                view.hashing.remove(&file.path);
                view.shares.insert(file.info_hash, share.clone());
                // A finished download that stays shared (Settings::share_downloads) was not
                // shared through `share`: remember it here, so it is shared again next time.
                let remember = !view.remembered.iter().any(|r| r.path == file.path);
                if remember {
                    view.remembered.push(RememberedShare::from(&share));
                    self.save_shares(&view);
                }
                self.emit(&mut view, UiEvent::Shared { share });
            }
            NodeEvent::ShareStopped { info_hash, reason } => {
                let name = view.shares.remove(&info_hash).map(|s| s.name);
                self.emit(
                    &mut view,
                    UiEvent::Unshared {
                        info_hash: info_hash.to_string(),
                        reason: Some(reason.clone()),
                        path: None,
                    },
                );
                drop(view);
                self.log(
                    "warn",
                    format!("Stopped sharing {}: {reason}", name.unwrap_or_default()),
                );
            }
            NodeEvent::IndexChanged => self.emit(&mut view, UiEvent::IndexChanged),
            NodeEvent::Room(event) => {
                let now = self.node().clock_ms();
                if let Some(room) = lock(&self.room).as_mut() {
                    room.on_event(&event, now);
                }
                match event {
                    shoal_node::RoomEvent::Refused { reason } => {
                        drop(view);
                        self.log("warn", format!("The room refused a message: {reason}"));
                    }
                    shoal_node::RoomEvent::Rejoined { room, .. } => {
                        drop(view);
                        self.log(
                            "info",
                            format!("Back in room {} after a reconnect", room.code),
                        );
                    }
                    _ => {}
                }
            }
            NodeEvent::UploadProgress(p) => {
                if let Some(share) = view.shares.get_mut(&p.info_hash) {
                    share.upload = Upload {
                        info_hash: p.info_hash.to_string(),
                        peers: p.peers,
                        sent_bytes: p.sent_bytes,
                        rate_bytes_per_sec: p.rate_bytes_per_sec,
                        peers_served: p.peers_served,
                    };
                    let upload = share.upload.clone();
                    self.emit(&mut view, UiEvent::Upload { upload });
                }
            }
            NodeEvent::DownloadStarted {
                transfer,
                info_hash,
                name,
                resumed_bytes,
                ..
            } => {
                if self.download_of(&mut view, transfer, info_hash).is_none() {
                    // Not one the app started (none is): shown all the same.
                    match self.node().transfer(transfer) {
                        Ok(status) => {
                            let id = self.next_transfer_id();
                            view.transfers.insert(id, Download::started(id, &status));
                        }
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                if let Some(id) = Self::by_run(&view, transfer) {
                    // Running, with its resumed bytes.
                    self.emit_card(&mut view, id);
                    self.save_transfers(&view);
                }
                drop(view);
                if resumed_bytes > 0 {
                    self.log("info", format!("Resuming {name}"));
                } else {
                    self.log("info", format!("Downloading {name}"));
                }
            }
            // The node's status has the change already: the card shows it.
            NodeEvent::DownloadProgress(shoal_node::DownloadProgress { transfer, .. })
            | NodeEvent::PeerConnected {
                transfer: Some(transfer),
                ..
            } => {
                if let Some(id) = Self::by_run(&view, transfer) {
                    self.emit_card(&mut view, id);
                }
            }
            NodeEvent::PeerConnected {
                transfer: None,
                peer,
                candidate_type,
                ..
            } => {
                drop(view);
                self.log(
                    "info",
                    format!(
                        "Peer {} connected to fetch from us ({candidate_type})",
                        peer.short()
                    ),
                );
            }
            NodeEvent::PeerBanned {
                transfer,
                peer,
                reason,
            } => {
                let name = Self::by_run(&view, transfer)
                    .and_then(|id| view.transfers.get(&id))
                    .map(|d| d.name.clone())
                    .unwrap_or_default();
                drop(view);
                self.log(
                    "warn",
                    format!(
                        "Peer {} sent bad data for {name} and was dropped: {reason}",
                        peer.short()
                    ),
                );
            }
            NodeEvent::Completed {
                transfer,
                info_hash,
                path,
                ..
            } => {
                let node = self.node();
                let Some(id) = self.download_of(&mut view, transfer, info_hash) else {
                    return;
                };
                let Some(d) = view.transfers.get_mut(&id) else {
                    return;
                };
                d.keep_figures(&node);
                d.state = TransferState::Completed;
                d.problem = None;
                d.path = Some(path.clone());
                let name = d.name.clone();
                self.emit_card(&mut view, id);
                self.save_transfers(&view);
                drop(view);
                self.log("info", format!("Downloaded {name} to {}", path.display()));
                if let Err(e) = self
                    .app
                    .notification()
                    .builder()
                    .title("Download complete")
                    .body(&name)
                    .show()
                {
                    tracing::debug!(error = %e, "desktop notification unavailable");
                }
            }
            NodeEvent::Failed {
                transfer,
                info_hash,
                reason,
                cause,
            } => {
                let resume = self.settings().resume_downloads;
                let node = self.node();
                let Some(id) = self.download_of(&mut view, transfer, info_hash) else {
                    return;
                };
                let Some(d) = view.transfers.get_mut(&id) else {
                    return;
                };
                d.keep_figures(&node);
                // The UI words it from the kind; the node's sentence goes to the log.
                let (state, problem) = match &cause {
                    FailureCause::Cancelled => (TransferState::Cancelled, None),
                    // The sharer left (or every sharer failed): wait for one to come back
                    // and resume by itself, unless the user turned that off.
                    c if c.is_no_source() && resume => {
                        (TransferState::Waiting, Some(Problem::SharerGone))
                    }
                    FailureCause::NoHolders | FailureCause::SourcesFailed { .. } => {
                        (TransferState::Failed, Some(Problem::SharerGone))
                    }
                    FailureCause::DiskFull => (TransferState::Failed, Some(Problem::DiskFull)),
                    FailureCause::Storage => (TransferState::Failed, Some(Problem::Storage)),
                };
                d.state = state;
                d.problem = problem;
                let name = d.name.clone();
                self.emit_card(&mut view, id);
                self.save_transfers(&view);
                drop(view);
                // Every sharer's last fault, for the log ("1a2b3c4d stalled; 5e6f7a8b
                // banned: sent a corrupt piece 3").
                let faults = match &cause {
                    FailureCause::SourcesFailed { peers } => peers
                        .iter()
                        .map(|(peer, fault)| {
                            format!(
                                "{} {}",
                                peer.short(),
                                shoal_node::text::inert(&fault.to_string(), 200)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                    _ => reason,
                };
                match cause {
                    FailureCause::Cancelled => self.log("info", format!("Cancelled {name}")),
                    c if c.is_no_source() && resume => self.log(
                        "warn",
                        format!("{name}: no sharer left ({faults}); waiting for one to come back"),
                    ),
                    _ => self.log("error", format!("Download of {name} failed: {faults}")),
                }
            }
        }
    }
}

fn hosting_info(h: &Hosting) -> HostingInfo {
    HostingInfo {
        listening: h.listening().to_string(),
        share_urls: h.share_urls(),
    }
}

fn server_url(settings: &Settings, hosting: Option<&Hosting>) -> String {
    match hosting {
        Some(h) => h.local_url(),
        None => settings.server_url.clone(),
    }
}

/// Starts the embedded server when the host switch is on; says why not when it cannot.
async fn start_hosting(settings: &Settings) -> (Option<Hosting>, Option<HostingProblem>) {
    if !settings.host {
        return (None, None);
    }
    let port = settings.host_port;
    match Hosting::start(port).await {
        Ok(h) => (Some(h), None),
        Err(e) => {
            let message = format!(
                "Port {port} cannot be used ({e}); another program, or another Shoal, holds it. Connecting to {} instead.",
                settings.server_url
            );
            (
                None,
                Some(HostingProblem {
                    message,
                    port,
                    free_port: free_port_after(port),
                }),
            )
        }
    }
}

/// The first of the 100 ports after `port` that can be bound on every interface now.
fn free_port_after(port: u16) -> Option<u16> {
    (port.saturating_add(1)..=port.saturating_add(100))
        .find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
}

/// Follows one node's live streams (issue 12) until that node is replaced: which host's
/// stream arrives, its codecs, and the URL the page plays it from.
async fn live_pump(core: Arc<AppCore>, node: NodeHandle, generation: u64) {
    use tokio::sync::broadcast::error::RecvError;
    let mut frames = node.live_frames();
    loop {
        let event = match frames.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => break,
        };
        if core.generation() != generation {
            break;
        }
        match event {
            shoal_node::LiveEvent::Started { from } => {
                let url = match node.live_url().await {
                    Ok(url) => Some(url),
                    Err(e) => {
                        core.log("error", format!("Cannot play the live stream: {e}"));
                        None
                    }
                };
                let mut live = lock(&core.live);
                live.from = Some(from);
                live.url = url;
                live.codecs.clear();
                drop(live);
                core.log("info", "The host went live");
            }
            shoal_node::LiveEvent::Frame { from, codec, .. } => {
                let mut live = lock(&core.live);
                if live.from == Some(from) {
                    live.codecs.insert(codec_words(&codec));
                }
            }
            shoal_node::LiveEvent::Ended { from, reason } => {
                let mut live = lock(&core.live);
                if live.from == Some(from) {
                    live.from = None;
                    live.codecs.clear();
                    drop(live);
                    core.log("info", format!("The live stream ended: {reason}"));
                }
            }
        }
    }
}

/// Feeds one node's events to the app until that node is replaced.
async fn pump(core: Arc<AppCore>, mut events: mpsc::Receiver<NodeEvent>, generation: u64) {
    while let Some(event) = events.recv().await {
        if core.generation() != generation {
            break;
        }
        // A (re)connection or a changed index may bring back the sharer of a waiting download.
        let retry = matches!(
            event,
            NodeEvent::Connection(ConnectionState::Connected { .. }) | NodeEvent::IndexChanged
        );
        core.on_event(event);
        if retry {
            core.resume_waiting();
        }
    }
}

/// The last component of `path`, for sentences ("" when it has none).
pub(crate) fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Files in a dropped folder above which the app asks first.
const CONFIRM_FOLDER_FILES: usize = 100;
/// Files in a dropped folder above which the app refuses (hashing them would take the
/// machine for a long time; the user can share sub-folders).
const MAX_FOLDER_FILES: usize = 10_000;

/// The regular files under `dir`, sorted, at most [`MAX_FOLDER_FILES`] + 1 (enough to say
/// "too many"): symbolic links are not followed and hidden entries (`.name`) are skipped.
fn files_in(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .take(MAX_FOLDER_FILES + 1)
        .collect();
    files.sort();
    files
}

/// Why a download waits instead of failing, when `e` is worth waiting out.
fn waiting_reason(e: &NodeError) -> Option<Problem> {
    match e {
        NodeError::UnknownInfoHash { .. }
        | NodeError::NoHolders { .. }
        | NodeError::SourcesFailed { .. } => Some(Problem::SharerGone),
        NodeError::NotConnected { .. } | NodeError::Timeout { .. } | NodeError::Stopped => {
            Some(Problem::NoServer)
        }
        _ => None,
    }
}

/// A remembered share whose file is not there.
fn missing_share(r: &RememberedShare) -> Share {
    Share {
        info_hash: r.info_hash.clone(),
        name: r.name.clone(),
        path: r.path.clone(),
        size: r.size,
        mime: r.mime.clone(),
        category: r.category,
        missing: Some(format!("The file is gone from {}", r.path.display())),
        upload: Upload {
            info_hash: r.info_hash.clone(),
            ..Upload::default()
        },
    }
}
