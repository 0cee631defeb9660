// @ts-check
// The commands of docs/app-ipc.md, one typed function each, over window.__TAURI__.core.invoke.
// Argument names are camelCase on this side; the Rust side sees snake_case.

/**
 * The Tauri global, or an error people can read when the page runs outside the app.
 * @returns {TauriGlobal}
 */
export function tauri() {
  const t = window.__TAURI__;
  if (!t) throw new Error("the Shoal window bridge is missing (open this page from the Shoal app)");
  return t;
}

/**
 * @template T
 * @param {string} cmd
 * @param {Record<string, unknown>} [args]
 * @returns {Promise<T>}
 */
function call(cmd, args) {
  try {
    return tauri().core.invoke(cmd, args);
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * True for the `{ code, message }` objects commands reject with.
 * @param {unknown} e
 * @returns {e is CommandError}
 */
export function isCommandError(e) {
  return typeof e === "object" && e !== null
    && typeof (/** @type {{message?: unknown}} */ (e)).message === "string"
    && typeof (/** @type {{code?: unknown}} */ (e)).code === "string";
}

/**
 * What to show people for a rejected command: its message, never a debug dump.
 * @param {unknown} e
 * @returns {string}
 */
export function errorText(e) {
  if (isCommandError(e)) return e.message;
  if (e instanceof Error) return `Something went wrong: ${e.message}`;
  if (typeof e === "string" && e) return `Something went wrong: ${e}`;
  return `Something went wrong: ${String(e)}`;
}

/**
 * The error code of a rejection, if it is a command error.
 * @param {unknown} e
 * @returns {ErrorCode | null}
 */
export function errorCode(e) {
  return isCommandError(e) ? e.code : null;
}

export const api = {
  /** @returns {Promise<AppState>} */
  appState: () => call("app_state"),
  /**
   * @param {TauriChannel<UiEvent>} onEvent
   * @returns {Promise<null>}
   */
  subscribe: (onEvent) => call("subscribe", { onEvent }),
  /**
   * Shares what was dropped on the window (the Rust side knows the paths).
   * @returns {Promise<number>}  files it started to share
   */
  shareDropped: () => call("share_dropped"),
  /** @returns {Promise<null>} */
  clearFinished: () => call("clear_finished"),
  /**
   * Turns hosting on at `port` (0: any free port).
   * @param {number} port
   * @returns {Promise<AppState>}
   */
  hostOnPort: (port) => call("host_on_port", { port }),
  /**
   * Starts a failed or cancelled download again, as the same transfer.
   * @param {number} transfer
   * @returns {Promise<number>}
   */
  retry: (transfer) => call("retry", { transfer }),
  /** @returns {Promise<null>} */
  pickAndShare: () => call("pick_and_share"),
  /**
   * @param {string} infoHash
   * @returns {Promise<null>}
   */
  unshare: (infoHash) => call("unshare", { infoHash }),
  /**
   * @param {Category | null} category
   * @returns {Promise<NetworkFile[]>}
   */
  listFiles: (category) => call("list_files", { category }),
  /**
   * @param {string} query
   * @param {Category | null} category
   * @returns {Promise<NetworkFile[]>}
   */
  searchFiles: (query, category) => call("search_files", { query, category }),
  /**
   * @param {string} infoHash
   * @returns {Promise<number>} the transfer id
   */
  download: (infoHash) => call("download", { infoHash }),
  /**
   * @param {number} transfer
   * @returns {Promise<null>}
   */
  cancel: (transfer) => call("cancel", { transfer }),
  /**
   * @param {string} path
   * @returns {Promise<null>}
   */
  openFile: (path) => call("open_file", { path }),
  /**
   * @param {string} path
   * @returns {Promise<null>}
   */
  showInFolder: (path) => call("show_in_folder", { path }),
  /**
   * @param {string} path
   * @returns {Promise<string>} http://127.0.0.1:<port>/<token>/<name>
   */
  mediaUrl: (path) => call("media_url", { path }),
  /**
   * Where the player reads a network file: the file when it is here, else the stream of its
   * download, which this starts or joins.
   * @param {string} infoHash
   * @returns {Promise<Watch>}
   */
  watch: (infoHash) => call("watch", { infoHash }),
  /**
   * @param {number} transfer
   * @returns {Promise<PieceMap>}
   */
  pieceMap: (transfer) => call("piece_map", { transfer }),
  /**
   * Hands the file (or its stream while it downloads) to the system's player.
   * @param {string} infoHash
   * @returns {Promise<null>}
   */
  openInPlayer: (infoHash) => call("open_in_player", { infoHash }),
  /**
   * Opens a room watching a file this app shares, as its host.
   * @param {string} infoHash
   * @returns {Promise<Room>}
   */
  createRoom: (infoHash) => call("create_room", { infoHash }),
  /**
   * @param {string} room a code or a link
   * @returns {Promise<Room>}
   */
  joinRoom: (room) => call("join_room", { room }),
  /** @returns {Promise<null>} */
  leaveRoom: () => call("leave_room"),
  /** @returns {Promise<Room | null>} */
  currentRoom: () => call("current_room"),
  /**
   * @param {"play" | "pause" | "seek" | "goOn"} action
   * @param {number} [positionMs]
   * @returns {Promise<null>}
   */
  roomControl: (action, positionMs) => call("room_control", { action, positionMs }),
  /**
   * @param {PlayerReport} player
   * @returns {Promise<RoomTick>}
   */
  roomTick: (player) => call("room_tick", { player }),
  /**
   * The host streams the room's file live (issue 12); answers what goes out, in words.
   * @returns {Promise<string>}
   */
  goLive: () => call("go_live"),
  /** @returns {Promise<null>} */
  stopLive: () => call("stop_live"),
  /**
   * @param {Settings} settings
   * @returns {Promise<AppState>}
   */
  saveSettings: (settings) => call("save_settings", { settings }),
  /** @returns {Promise<string | null>} */
  pickFolder: () => call("pick_folder"),
};
