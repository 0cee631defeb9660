// @ts-check
// Entry point: builds the page, loads the AppState snapshot, then follows the UiEvent channel
// (docs/app-ipc.md). Every module renders one part of the window; this one wires them.

import { api, errorText, tauri } from "./api.js";
import { byId } from "./dom.js";
import { onConnectionChange, renderConnection, renderHosting } from "./header.js";
import { fillIconPlaceholders } from "./icons.js";
import { appendLog, setLog, setLogVisible } from "./log.js";
import { refresh as refreshNetwork, refreshSoon as refreshNetworkSoon, setStale as setNetworkStale } from "./network.js";
import { applySettings, showHostingProblem } from "./settings.js";
import { addShare, hashingFailed, removeShare, setHashing, setShares, shareDropped, updateHashing, updateUpload } from "./shares.js";
import { toast } from "./toast.js";
import { setTransfers, upsertTransfer } from "./transfers.js";
import { restoreRoom } from "./room.js";
import { isViewerOpen } from "./viewer.js";

fillIconPlaceholders(document);

// ---- Tabs: Files | Settings | Log ----

/** @typedef {"files" | "settings" | "log"} TabName */
/** @type {TabName[]} */
const TABS = ["files", "settings", "log"];

/** @param {TabName} name */
function showTab(name) {
  for (const tab of TABS) {
    const button = byId(`${tab}-tab`, HTMLButtonElement);
    const view = byId(`${tab}-view`, HTMLElement);
    const on = tab === name;
    button.setAttribute("aria-selected", String(on));
    button.tabIndex = on ? 0 : -1;
    view.hidden = !on;
  }
  document.body.dataset.tab = name;
  setLogVisible(name === "log");
}

for (const tab of TABS) {
  const button = byId(`${tab}-tab`, HTMLButtonElement);
  button.addEventListener("click", () => showTab(tab));
  button.addEventListener("keydown", (ev) => {
    const step = ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0;
    if (!step) return;
    ev.preventDefault();
    const next = TABS[(TABS.indexOf(tab) + step + TABS.length) % TABS.length];
    showTab(next);
    byId(`${next}-tab`, HTMLButtonElement).focus();
  });
}
showTab("files");

// ---- Drag and drop onto the window ----

const overlay = byId("drop-overlay", HTMLElement);

/** @param {TauriEvent<DragDropPayload>} event */
function onDragDrop(event) {
  const { type, paths } = event.payload;
  if (type === "enter" || type === "over") {
    if (!isViewerOpen()) overlay.hidden = false;
  } else if (type === "leave") {
    overlay.hidden = true;
  } else if (type === "drop") {
    overlay.hidden = true;
    if (isViewerOpen() || !paths || !paths.length) return;
    showTab("files");
    void shareDropped();
  }
}

// ---- Events from the Rust side ----

/** @param {UiEvent} event */
function dispatch(event) {
  switch (event.kind) {
    case "connection":
      renderConnection(event.connection);
      break;
    case "hosting":
      renderHosting(event.hosting, event.problem);
      showHostingProblem(event.problem);
      break;
    case "hashing":
      updateHashing(event.hashing);
      break;
    case "shared":
      addShare(event.share);
      break;
    case "unshared":
      if (event.path) {
        hashingFailed(event.path, event.reason);
      } else {
        removeShare(event.infoHash, event.reason);
      }
      break;
    case "upload":
      updateUpload(event.upload);
      break;
    case "indexChanged":
      refreshNetworkSoon();
      break;
    case "transfer":
      upsertTransfer(event.transfer);
      break;
    case "log":
      appendLog(event.entry);
      break;
    case "notice":
      toast(event.entry.message, event.entry.level === "error" ? "error" : "info");
      break;
    case "settings":
      applySettings(event.settings);
      break;
    default:
      // A newer Rust side may send kinds this UI does not know; ignore them.
      break;
  }
}

/** @param {AppState} state */
function renderState(state) {
  applySettings(state.settings);
  renderConnection(state.connection);
  renderHosting(state.hosting, state.hostingProblem);
  showHostingProblem(state.hostingProblem);
  setShares(state.shares);
  setHashing(state.hashing ?? []);
  setTransfers(state.transfers);
  setLog(state.log);
}

// Connection and hosting after a save arrive as events. The AppState that save_settings
// returns can be older than events already shown (the new node may connect first), so only
// its settings are used (by settings.js).

// Whenever the node (re)connects, the network list may have changed wholesale.
onConnectionChange((c) => {
  setNetworkStale(c.state !== "connected");
  if (c.state === "connected") void refreshNetwork();
});

async function start() {
  if (!window.__TAURI__) {
    // Opened outside the app (a plain browser): say so once instead of failing everywhere.
    toast("Shoal's window bridge is missing: open this page from the Shoal app.", "error");
    return;
  }
  // Listen first, render the snapshot, then replay what arrived meanwhile: nothing is lost
  // between the snapshot and the first event. Frequent updates (hashing, transfers) come on a
  // Channel; rare notices (connection, shares, index, log, settings) as Tauri events.
  /** @type {UiEvent[] | null} */
  let early = [];
  /** @param {UiEvent} event */
  const receive = (event) => (early ? early.push(event) : dispatch(event));
  try {
    /** @type {TauriChannel<UiEvent>} */
    const channel = new (tauri().core.Channel)();
    channel.onmessage = receive;
    await api.subscribe(channel);
    await tauri().event.listen("shoal://notice", (/** @type {TauriEvent<UiEvent>} */ e) =>
      receive(e.payload),
    );
  } catch (e) {
    toast(`Live updates are off. ${errorText(e)}`, "error");
  }

  try {
    renderState(await api.appState());
  } catch (e) {
    toast(`Could not load Shoal's state. ${errorText(e)}`, "error");
  }
  const queued = early;
  early = null;
  queued.forEach(dispatch);

  try {
    await tauri().webview.getCurrentWebview().onDragDropEvent(onDragDrop);
  } catch (e) {
    toast(`Dropping files on the window is off. ${errorText(e)}`, "error");
  }

  await restoreRoom();
  await refreshNetwork();
}

void start();
