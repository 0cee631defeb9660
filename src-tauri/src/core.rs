//! The app's state around one [`NodeHandle`]: settings, the embedded server, what the UI
//! shows (shares, hashing, transfers, log), the UI's event channels, and the pump that turns
//! node events into UI events.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use shoal_node::{IceServer, InfoHash, Node, NodeConfig, NodeEvent, NodeHandle, RtcConfig};
use tauri::ipc::Channel;
use tauri::{AppHandle, Emitter};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::mpsc;

use crate::dto::{
    AppState, Connection, Hashing, HostingInfo, LogEntry, PeerInfo, Share, Transfer, TransferState,
    UiError, UiEvent,
};
use crate::hosting::Hosting;
use crate::settings::Settings;

/// Most log entries kept.
const LOG_LINES: usize = 500;

/// The Tauri event that carries rare notices (docs/app-ipc.md).
const NOTICE_EVENT: &str = "shoal://notice";

/// What the UI shows; kept here so a reloaded window gets it back from `app_state`.
struct View {
    connection: Connection,
    hosting: Option<HostingInfo>,
    shares: BTreeMap<InfoHash, Share>,
    hashing: BTreeMap<PathBuf, Hashing>,
    transfers: BTreeMap<u64, Transfer>,
    log: VecDeque<LogEntry>,
    channels: Vec<Channel<UiEvent>>,
}

struct Inner {
    settings: Settings,
    node: NodeHandle,
    hosting: Option<Hosting>,
    /// Paths the user shares, re-shared when the node restarts.
    shared_paths: Vec<PathBuf>,
}

/// Shared app state, held in `tauri::State`.
pub struct AppCore {
    app: AppHandle,
    config_dir: PathBuf,
    view: Mutex<View>,
    inner: tokio::sync::Mutex<Inner>,
    /// Bumped at every node restart; a pump of an older node stops. Atomic so the pump never
    /// waits for `inner`, which a settings change holds while the old node shuts down (the
    /// old node may be waiting for its pump to take an event).
    generation: AtomicU64,
    /// The current node, for one-line commands without awaiting `inner`.
    node: Mutex<NodeHandle>,
    settings: Mutex<Settings>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn node_config(settings: &Settings, server_url: String) -> NodeConfig {
    let mut ice_servers = Vec::new();
    if !settings.stun_servers.is_empty() {
        ice_servers.push(IceServer {
            urls: settings.stun_servers.clone(),
            username: None,
            credential: None,
        });
    }
    for turn in &settings.turn_servers {
        ice_servers.push(IceServer {
            urls: vec![turn.url.clone()],
            username: Some(turn.username.clone()),
            credential: Some(turn.credential.clone()),
        });
    }
    NodeConfig {
        server_url,
        rtc: RtcConfig {
            ice_servers,
            ..RtcConfig::every_interface()
        },
        download_dir: settings.download_dir.clone(),
        agent: format!("shoal-app/{}", env!("CARGO_PKG_VERSION")),
        ..NodeConfig::default()
    }
}

impl AppCore {
    /// Loads settings, starts the embedded server if hosting, and starts the node.
    pub async fn start(app: AppHandle, config_dir: PathBuf) -> Arc<Self> {
        let settings = Settings::load(&config_dir);
        let (hosting, hosting_error) = start_hosting(&settings).await;
        let url = server_url(&settings, hosting.as_ref());
        let (node, events) = Node::spawn(node_config(&settings, url.clone()));
        let core = Arc::new(Self {
            app,
            config_dir,
            view: Mutex::new(View {
                connection: Connection::Connecting { url },
                hosting: hosting.as_ref().map(hosting_info),
                shares: BTreeMap::new(),
                hashing: BTreeMap::new(),
                transfers: BTreeMap::new(),
                log: VecDeque::new(),
                channels: Vec::new(),
            }),
            inner: tokio::sync::Mutex::new(Inner {
                settings: settings.clone(),
                node: node.clone(),
                hosting,
                shared_paths: Vec::new(),
            }),
            node: Mutex::new(node),
            settings: Mutex::new(settings),
            generation: AtomicU64::new(0),
        });
        core.log("info", "Shoal started");
        if let Some(e) = hosting_error {
            core.log("error", e);
        }
        tauri::async_runtime::spawn(pump(core.clone(), events, 0));
        core
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
        let view = lock(&self.view);
        AppState {
            settings: self.settings(),
            connection: view.connection.clone(),
            hosting: view.hosting.clone(),
            shares: view.shares.values().cloned().collect(),
            hashing: view.hashing.values().cloned().collect(),
            transfers: view.transfers.values().rev().cloned().collect(),
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
        if matches!(event, UiEvent::Hashing { .. } | UiEvent::Transfer { .. }) {
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

    /// Shares files: hashing progress and the result arrive as events; failures are logged.
    pub fn share_paths(self: &Arc<Self>, paths: Vec<PathBuf>) {
        for path in paths {
            let core = self.clone();
            tauri::async_runtime::spawn(async move { core.share_one(path).await });
        }
    }

    async fn share_one(self: Arc<Self>, path: PathBuf) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
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
                let mut inner = self.inner.lock().await;
                if !inner.shared_paths.contains(&path) {
                    inner.shared_paths.push(path);
                }
                drop(inner);
                self.log("info", format!("Sharing {}", shared.name));
            }
            Err(e) => {
                {
                    let mut view = lock(&self.view);
                    self.emit(
                        &mut view,
                        UiEvent::Unshared {
                            info_hash: String::new(),
                            reason: Some(e.to_string()),
                            path: Some(path.clone()),
                        },
                    );
                }
                self.log(
                    "error",
                    format!("Cannot share {name}: {}", UiError::from(e).message),
                );
            }
        }
    }

    /// Stops sharing.
    ///
    /// # Errors
    /// Not shared, or the node stopped.
    pub async fn unshare(&self, info_hash: InfoHash) -> Result<(), UiError> {
        self.node().unshare(info_hash).await?;
        let removed = {
            let mut view = lock(&self.view);
            let removed = view.shares.remove(&info_hash);
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
            self.inner
                .lock()
                .await
                .shared_paths
                .retain(|p| *p != share.path);
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
                .any(|t| t.path.as_deref() == Some(path))
    }

    /// Validates, saves and applies new settings: restarts the node (and the embedded server
    /// if hosting changed), then shares the same files again.
    ///
    /// # Errors
    /// Invalid settings, or they cannot be saved.
    pub async fn apply_settings(self: &Arc<Self>, settings: Settings) -> Result<AppState, UiError> {
        settings.validate()?;
        settings.save(&self.config_dir)?;
        let mut inner = self.inner.lock().await;
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
        if !network_changed {
            drop(inner);
            return Ok(self.snapshot());
        }
        self.log("info", "Settings saved; reconnecting");
        inner.node.shutdown().await;
        if hosting_changed {
            if let Some(h) = inner.hosting.take() {
                h.stop().await;
            }
            let (hosting, error) = start_hosting(&settings).await;
            inner.hosting = hosting;
            if let Some(e) = error {
                self.log("error", e);
            }
            let info = inner.hosting.as_ref().map(hosting_info);
            let mut view = lock(&self.view);
            view.hosting = info.clone();
            self.emit(&mut view, UiEvent::Hosting { hosting: info });
        }
        let url = server_url(&settings, inner.hosting.as_ref());
        let (node, events) = Node::spawn(node_config(&settings, url));
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        inner.node = node.clone();
        *lock(&self.node) = node;
        {
            // Shares come back as they are re-announced; running transfers stopped.
            let mut view = lock(&self.view);
            view.shares.clear();
            let stopped: Vec<Transfer> = view
                .transfers
                .values_mut()
                .filter(|t| t.state == TransferState::Running)
                .map(|t| {
                    t.state = TransferState::Failed;
                    t.error =
                        Some("Stopped by a settings change; download it again to resume".into());
                    t.clone()
                })
                .collect();
            for transfer in stopped {
                self.emit(&mut view, UiEvent::Transfer { transfer });
            }
        }
        tauri::async_runtime::spawn(pump(self.clone(), events, generation));
        let paths = inner.shared_paths.clone();
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
                let connection = Connection::from(state);
                view.connection = connection.clone();
                self.emit(&mut view, UiEvent::Connection { connection });
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
            NodeEvent::DownloadStarted {
                transfer,
                info_hash,
                name,
                len_bytes,
                resumed_bytes,
            } => {
                let mut t = Transfer::new(transfer, info_hash.to_string(), name.clone(), len_bytes);
                t.bytes_done = resumed_bytes;
                view.transfers.insert(transfer.0, t.clone());
                self.emit(&mut view, UiEvent::Transfer { transfer: t });
                drop(view);
                if resumed_bytes > 0 {
                    self.log("info", format!("Resuming {name}"));
                } else {
                    self.log("info", format!("Downloading {name}"));
                }
            }
            NodeEvent::DownloadProgress(p) => {
                if let Some(t) = view.transfers.get_mut(&p.transfer.0) {
                    t.bytes_done = p.bytes_done;
                    t.len_bytes = p.len_bytes;
                    t.rate_bytes_per_sec = p.rate_bytes_per_sec;
                    t.eta_secs = (p.rate_bytes_per_sec > 1.0).then(|| {
                        (p.len_bytes.saturating_sub(p.bytes_done) as f64 / p.rate_bytes_per_sec)
                            .ceil() as u64
                    });
                    // `peers` lists nodes (a download may hold two connections to one).
                    if p.peers == 0 {
                        t.peers.clear();
                    }
                    let transfer = t.clone();
                    self.emit(&mut view, UiEvent::Transfer { transfer });
                }
            }
            NodeEvent::PeerConnected {
                transfer: Some(transfer),
                peer,
                candidate_type,
                ..
            } => {
                if let Some(t) = view.transfers.get_mut(&transfer.0) {
                    let info = PeerInfo {
                        peer: peer.short(),
                        candidate_type: candidate_type.to_string(),
                    };
                    if !t.peers.contains(&info) {
                        t.peers.push(info);
                    }
                    let transfer = t.clone();
                    self.emit(&mut view, UiEvent::Transfer { transfer });
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
                let name = view
                    .transfers
                    .get(&transfer.0)
                    .map(|t| t.name.clone())
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
            NodeEvent::Completed { transfer, path, .. } => {
                let Some(t) = view.transfers.get_mut(&transfer.0) else {
                    return;
                };
                t.state = TransferState::Completed;
                t.bytes_done = t.len_bytes;
                t.rate_bytes_per_sec = 0.0;
                t.eta_secs = None;
                t.path = Some(path.clone());
                let transfer = t.clone();
                let name = transfer.name.clone();
                self.emit(&mut view, UiEvent::Transfer { transfer });
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
                transfer, reason, ..
            } => {
                let Some(t) = view.transfers.get_mut(&transfer.0) else {
                    return;
                };
                let cancelled = reason == "cancelled";
                t.state = if cancelled {
                    TransferState::Cancelled
                } else {
                    TransferState::Failed
                };
                t.rate_bytes_per_sec = 0.0;
                t.eta_secs = None;
                t.error = (!cancelled).then(|| reason.clone());
                let transfer = t.clone();
                let name = transfer.name.clone();
                self.emit(&mut view, UiEvent::Transfer { transfer });
                drop(view);
                if cancelled {
                    self.log("info", format!("Cancelled {name}"));
                } else {
                    self.log("error", format!("Download of {name} failed: {reason}"));
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

async fn start_hosting(settings: &Settings) -> (Option<Hosting>, Option<String>) {
    if !settings.host {
        return (None, None);
    }
    match Hosting::start(settings.host_port).await {
        Ok(h) => (Some(h), None),
        Err(e) => (
            None,
            Some(format!(
                "Cannot host the signaling server on port {}: {e}. Choose another port in Settings.",
                settings.host_port
            )),
        ),
    }
}

/// Feeds one node's events to the app until that node is replaced.
async fn pump(core: Arc<AppCore>, mut events: mpsc::Receiver<NodeEvent>, generation: u64) {
    while let Some(event) = events.recv().await {
        if core.generation() != generation {
            break;
        }
        core.on_event(event);
    }
}
