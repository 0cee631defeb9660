//! Tauri commands: each is one call on the node or the app core (docs/app-ipc.md).

use std::path::PathBuf;
use std::sync::Arc;

use shoal_node::{Category, InfoHash};
use tauri::ipc::Channel;
use tauri::{AppHandle, Manager, State};
use tauri_plugin_opener::OpenerExt;

use crate::core::AppCore;
use crate::dto::{
    AppState, NetworkFile, PieceMap, PlayerReport, Room, RoomTick, UiError, UiEvent, Watch,
};
use crate::settings::Settings;

type Core<'a> = State<'a, Arc<AppCore>>;

fn info_hash(text: &str) -> Result<InfoHash, UiError> {
    text.parse()
        .map_err(|e| UiError::new("unknown_content", format!("Not an info hash: {e}")))
}

fn category(text: Option<String>) -> Result<Option<Category>, UiError> {
    text.map(|c| c.parse().map_err(|e: String| UiError::new("internal", e)))
        .transpose()
}

fn known_path(core: &AppCore, path: PathBuf) -> Result<PathBuf, UiError> {
    if core.is_known_path(&path) {
        Ok(path)
    } else {
        Err(UiError::new(
            "file",
            "Only shared or downloaded files can be opened",
        ))
    }
}

/// A snapshot of everything the UI shows. The first call marks the window interactive.
#[tauri::command]
pub fn app_state(core: Core<'_>) -> AppState {
    static FIRST: std::sync::Once = std::sync::Once::new();
    FIRST.call_once(|| {
        tracing::info!(
            startup_ms = crate::since_start_ms() as u64,
            "window interactive"
        );
    });
    core.snapshot()
}

/// Starts the event stream.
#[tauri::command]
pub fn subscribe(core: Core<'_>, on_event: Channel<UiEvent>) {
    core.subscribe(on_event);
}

/// Shares the files of the last drop on the window, which the Rust side recorded from the
/// window system's drag-and-drop event; answers how many it started to share (0 when there
/// was no drop, or it was already taken). The page never names a path to share: a script in
/// the page could otherwise share any file the user can read (issue 7, item 10).
#[tauri::command]
pub fn share_dropped(core: Core<'_>) -> usize {
    let paths = core.take_dropped();
    let n = paths.len();
    core.share_paths(paths);
    n
}

/// Opens the native file dialog and shares what was picked.
#[tauri::command]
pub async fn pick_and_share(app: AppHandle, core: Core<'_>) -> Result<(), UiError> {
    let picked = pick(&app, false).await?;
    core.share_paths(picked);
    Ok(())
}

/// Picks a download folder.
#[tauri::command]
pub async fn pick_folder(app: AppHandle) -> Result<Option<PathBuf>, UiError> {
    Ok(pick(&app, true).await?.into_iter().next())
}

/// Runs an rfd (GTK 3) dialog. rfd drives GTK on a thread of its own and waits for it, so it
/// must not be called on the main thread, which runs Tauri's event loop (that deadlocks);
/// awaiting rfd's async dialog from a task is what tauri-plugin-dialog does too.
async fn pick(app: &AppHandle, folder: bool) -> Result<Vec<PathBuf>, UiError> {
    let mut dialog = rfd::AsyncFileDialog::new();
    if let Some(window) = app.get_webview_window("main") {
        dialog = dialog.set_parent(&window);
    }
    let picked = if folder {
        dialog
            .set_title("Download folder")
            .pick_folder()
            .await
            .map(|f| vec![f.path().to_owned()])
    } else {
        dialog
            .set_title("Share files")
            .pick_files()
            .await
            .map(|files| files.iter().map(|f| f.path().to_owned()).collect())
    };
    Ok(picked.unwrap_or_default())
}

/// Stops sharing a file.
#[tauri::command]
pub async fn unshare(core: Core<'_>, info_hash: String) -> Result<(), UiError> {
    core.unshare(self::info_hash(&info_hash)?).await
}

/// The network's files.
#[tauri::command]
pub async fn list_files(
    core: Core<'_>,
    category: Option<String>,
) -> Result<Vec<NetworkFile>, UiError> {
    let node = core.node();
    let me = node.node_id().await?;
    let files = node.list(self::category(category)?).await?;
    Ok(files.into_iter().map(|f| NetworkFile::new(f, me)).collect())
}

/// Search by name.
#[tauri::command]
pub async fn search_files(
    core: Core<'_>,
    query: String,
    category: Option<String>,
) -> Result<Vec<NetworkFile>, UiError> {
    let node = core.node();
    let me = node.node_id().await?;
    let files = node.search(&query, self::category(category)?).await?;
    Ok(files.into_iter().map(|f| NetworkFile::new(f, me)).collect())
}

/// Starts a download into the configured folder.
#[tauri::command]
pub async fn download(core: Core<'_>, info_hash: String) -> Result<u64, UiError> {
    core.inner().download(self::info_hash(&info_hash)?).await
}

/// Cancels a download (its .part file stays for a resume).
#[tauri::command]
pub async fn cancel(core: Core<'_>, transfer: u64) -> Result<(), UiError> {
    core.cancel(transfer).await
}

/// Starts a failed or cancelled download again, as the same transfer.
#[tauri::command]
pub async fn retry(core: Core<'_>, transfer: u64) -> Result<u64, UiError> {
    core.inner().retry(transfer).await
}

/// Forgets finished, failed and cancelled downloads (their files stay).
#[tauri::command]
pub fn clear_finished(core: Core<'_>) {
    core.clear_finished();
}

/// The file's name and folder, for sentences.
fn name_and_folder(path: &std::path::Path) -> (String, String) {
    let name = crate::core::file_name(path);
    let folder = path
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    (name, folder)
}

/// Opens a shared or downloaded file in its default application.
#[tauri::command]
pub fn open_file(app: AppHandle, core: Core<'_>, path: PathBuf) -> Result<(), UiError> {
    let path = known_path(&core, path)?;
    app.opener()
        .open_path(path.to_string_lossy(), None::<&str>)
        .map_err(|e| {
            // The opener's own text (an exit status, a D-Bus error) goes to the log only.
            tracing::info!(error = %e, path = %path.display(), "no default application");
            let (name, folder) = name_and_folder(&path);
            UiError::new(
                "file",
                format!("No application on this computer opens “{name}”. The file is in {folder}."),
            )
        })
}

/// Shows a shared or downloaded file in the file manager; without a file manager that
/// answers on D-Bus, opens its folder; says where the file is when neither works.
#[tauri::command]
pub fn show_in_folder(app: AppHandle, core: Core<'_>, path: PathBuf) -> Result<(), UiError> {
    let path = known_path(&core, path)?;
    let Err(e) = app.opener().reveal_item_in_dir(&path) else {
        return Ok(());
    };
    tracing::info!(error = %e, "no file manager on D-Bus; opening the folder");
    let (_, folder) = name_and_folder(&path);
    app.opener().open_path(&folder, None::<&str>).map_err(|e| {
        tracing::info!(error = %e, %folder, "the folder cannot be opened either");
        UiError::new(
            "file",
            format!("No file manager could be started. The file is in {folder}."),
        )
    })
}

/// A loopback URL with HTTP Range support for the in-app player.
#[tauri::command]
pub async fn media_url(core: Core<'_>, path: PathBuf) -> Result<String, UiError> {
    Ok(core.node().media_url(path).await?)
}

/// Where the player reads `info_hash`: the file when it is here, else the stream of its
/// download, which this starts or joins (issue 10, item 4).
#[tauri::command]
pub async fn watch(core: Core<'_>, info_hash: String) -> Result<Watch, UiError> {
    core.inner().watch(self::info_hash(&info_hash)?).await
}

/// Opens a room watching a file this app shares, as its host (issue 11).
#[tauri::command]
pub async fn create_room(core: Core<'_>, info_hash: String) -> Result<Room, UiError> {
    tracing::debug!(%info_hash, "create_room");
    let result = core.inner().create_room(self::info_hash(&info_hash)?).await;
    if let Err(e) = &result {
        core.log("warn", format!("Cannot open a room: {}", e.message));
    }
    result
}

/// Joins a room by code or link.
#[tauri::command]
pub async fn join_room(core: Core<'_>, room: String) -> Result<Room, UiError> {
    let result = core.inner().join_room(&room).await;
    if let Err(e) = &result {
        core.log("warn", format!("Cannot join the room: {}", e.message));
    }
    result
}

/// Leaves the room (the host ends it).
#[tauri::command]
pub async fn leave_room(core: Core<'_>) -> Result<(), UiError> {
    core.leave_room().await;
    Ok(())
}

/// The room this app is in, for a reloaded page.
#[tauri::command]
pub fn current_room(core: Core<'_>) -> Option<Room> {
    core.current_room()
}

/// The host's play, pause, seek or go-on.
#[tauri::command]
pub async fn room_control(
    core: Core<'_>,
    action: String,
    position_ms: Option<f64>,
) -> Result<(), UiError> {
    core.room_control(&action, position_ms)
}

/// The room's host streams its file live to every member (issue 12); answers what goes
/// out, in words.
#[tauri::command]
pub async fn go_live(core: Core<'_>) -> Result<String, UiError> {
    let result = core.inner().go_live().await;
    if let Err(e) = &result {
        core.log("warn", format!("Cannot go live: {}", e.message));
    }
    result
}

/// The host stops its live stream.
#[tauri::command]
pub async fn stop_live(core: Core<'_>) -> Result<(), UiError> {
    core.inner().stop_live().await
}

/// The room player's step: its state in, what to do and who is in the room out.
#[tauri::command]
pub async fn room_tick(core: Core<'_>, player: PlayerReport) -> Result<RoomTick, UiError> {
    core.room_tick(player).await
}

/// Which bytes of a download are here, on their way or missing (the player's piece map).
#[tauri::command]
pub async fn piece_map(core: Core<'_>, transfer: u64) -> Result<PieceMap, UiError> {
    core.piece_map(transfer).await
}

/// Hands `info_hash` to the system's player for its MIME type: the file when it is here,
/// else the stream URL of its download (a player that reads URLs plays it while it
/// downloads). For files the built-in player cannot decode (issue 10, item 4).
#[tauri::command]
pub async fn open_in_player(core: Core<'_>, info_hash: String) -> Result<(), UiError> {
    let watch = core.inner().watch(self::info_hash(&info_hash)?).await?;
    // The name, hence the type, comes from the sharer: only a player for audio or video is
    // started, never the default application of whatever type a name claims (a `.jar`
    // announced as a video must not run).
    let mime = mime_guess::from_path(watch.url.rsplit('/').next().unwrap_or_default())
        .first_raw()
        .unwrap_or("application/octet-stream");
    if !(mime.starts_with("video/") || mime.starts_with("audio/")) {
        return Err(UiError::new(
            "file",
            format!("Only audio and video go to an external player; this file's name says {mime}."),
        ));
    }
    match watch.path {
        Some(path) => launch_player(mime, &file_uri(&path)),
        None => launch_player(mime, &watch.url),
    }
}

/// `file://` URI of an absolute path, percent-encoded (RFC 8089).
fn file_uri(path: &std::path::Path) -> String {
    url::Url::from_file_path(path)
        .map(String::from)
        .unwrap_or_else(|()| path.display().to_string())
}

/// Starts the default application for `mime` that opens URLs, on `url`.
#[cfg(target_os = "linux")]
fn launch_player(mime: &str, url: &str) -> Result<(), UiError> {
    use gio::prelude::AppInfoExt;
    let none = || {
        UiError::new(
            "file",
            format!(
                "No player on this computer is set up to open {mime} from a link. Install one (mpv or VLC), or wait until the download is complete and use Open."
            ),
        )
    };
    let player = gio::AppInfo::default_for_type(mime, true).ok_or_else(none)?;
    let name = player.name().to_string();
    player
        .launch_uris(&[url], None::<&gio::AppLaunchContext>)
        .map_err(|e| {
            tracing::info!(error = %e, player = %name, "the player did not start");
            UiError::new("file", format!("{name} could not be started."))
        })?;
    tracing::info!(player = %name, %url, "handed the stream to the system's player");
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn launch_player(mime: &str, _url: &str) -> Result<(), UiError> {
    Err(UiError::new(
        "file",
        format!(
            "Opening {mime} streams in another player is not supported on this system yet; use Open once the download is complete."
        ),
    ))
}

/// Hosts the signaling server on `port` (the header's offer after a taken port).
#[tauri::command]
pub async fn host_on_port(core: Core<'_>, port: u16) -> Result<AppState, UiError> {
    core.inner().host_on_port(port).await
}

/// Saves and applies settings.
#[tauri::command]
pub async fn save_settings(core: Core<'_>, settings: Settings) -> Result<AppState, UiError> {
    core.inner().clone().apply_settings(settings).await
}
