//! Thin Tauri 2 shell over the node: commands are one-liners over NodeHandle; events reach the
//! UI through an ipc::Channel.
//!
//! `ui/` is the web UI; `docs/app-ipc.md` is the contract between the two. The app hosts the
//! bundled signaling server in-process when the host switch is on (the default).

#![deny(missing_docs)]

mod commands;
mod core;
mod downloads;
mod dto;
mod hosting;
#[cfg(test)]
mod ipc_contract;
mod library;
mod room;
mod settings;

pub use settings::{Settings, TurnServer};

/// When `run` started, for the start-up time logged once the UI asks for its first state.
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Milliseconds since `run` started.
pub(crate) fn since_start_ms() -> u128 {
    STARTED.get().map(|t| t.elapsed().as_millis()).unwrap_or(0)
}

/// Runs the app until its window closes.
///
/// # Panics
/// When the window system or webview cannot start (nothing to show then).
pub fn run() {
    let _ = STARTED.set(std::time::Instant::now());
    shoal_node::init_logging(
        "error,shoal_app=info,shoal_node=warn,shoal_rtc=warn,shoal_signal=warn",
    );
    tauri::Builder::default()
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_notification::init())
        .setup(|app| {
            let handle = app.handle().clone();
            let dirs = settings::dirs();
            let core = tauri::async_runtime::block_on(core::AppCore::start(handle.clone(), dirs));
            tauri::Manager::manage(&handle, core);
            Ok(())
        })
        // The main window is a webview window: its drops arrive as window events.
        .on_window_event(|window, event| {
            use tauri::{DragDropEvent, Manager, WindowEvent};
            if let WindowEvent::DragDrop(drag) = event
                && let Some(core) = window.try_state::<std::sync::Arc<core::AppCore>>()
            {
                match drag {
                    // Tauri emits the page's drop event before this handler runs, both on the
                    // main thread; the page's `share_dropped` call comes after.
                    DragDropEvent::Drop { paths, .. } => core.set_dropped(paths.clone()),
                    // A new drag forgets a drop the page did not take (GTK may send Leave
                    // around a drop, so only Enter clears).
                    DragDropEvent::Enter { .. } => core.set_dropped(Vec::new()),
                    _ => {}
                }
            }
        })
        .invoke_handler(tauri::generate_handler![
            commands::app_state,
            commands::subscribe,
            commands::share_dropped,
            commands::pick_and_share,
            commands::pick_folder,
            commands::unshare,
            commands::list_files,
            commands::search_files,
            commands::download,
            commands::cancel,
            commands::clear_finished,
            commands::retry,
            commands::open_file,
            commands::show_in_folder,
            commands::media_url,
            commands::watch,
            commands::piece_map,
            commands::open_in_player,
            commands::create_room,
            commands::join_room,
            commands::leave_room,
            commands::current_room,
            commands::room_control,
            commands::room_tick,
            commands::go_live,
            commands::stop_live,
            commands::save_settings,
            commands::host_on_port,
        ])
        .run(tauri::generate_context!())
        .expect("the window system and webview start");
}
