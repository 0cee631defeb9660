// @ts-check
// "Network": every file others share, with search, a category filter, a Refresh button and
// live updates on `indexChanged`.

import { api, errorCode, errorText } from "./api.js";
import { byId, debounce, h, setText } from "./dom.js";
import { CATEGORY_LABEL, humanSize } from "./format.js";
import { icon } from "./icons.js";
import { toast } from "./toast.js";
import { isDownloading, onTransfersChanged, startPending } from "./transfers.js";
import { createRoom } from "./room.js";
import { watchFile } from "./viewer.js";

const searchEl = byId("network-search", HTMLInputElement);
const categoryEl = byId("network-category", HTMLSelectElement);
const refreshEl = byId("network-refresh", HTMLButtonElement);
const listEl = byId("network-list", HTMLUListElement);
const countEl = byId("network-count", HTMLElement);
const errorEl = byId("network-error", HTMLElement);
const errorTextEl = byId("network-error-text", HTMLElement);
const emptyEl = byId("network-empty", HTMLElement);
const emptyTextEl = byId("network-empty-text", HTMLElement);
const emptyHintEl = byId("network-empty-hint", HTMLElement);

/** @type {NetworkFile[]} */
let files = [];
/** Whether the list shown came from a successful fetch (an error keeps the last good list). */
let loaded = false;
/** Number of the newest request; older answers are dropped. */
let requestSeq = 0;
/** Info hashes whose Download was pressed and has not answered yet. @type {Set<string>} */
const starting = new Set();
/** The connection was lost: the list shown may be out of date and cannot be acted on. */
let stale = false;

/**
 * Greys the list out while Shoal is not connected (it refreshes on reconnection).
 * @param {boolean} lost
 */
export function setStale(lost) {
  if (stale === lost) return;
  stale = lost;
  listEl.classList.toggle("stale", lost);
  if (lost && files.length) {
    setText(errorTextEl, "The connection was lost: this list may be out of date. It refreshes by itself when Shoal is back.");
    errorEl.hidden = false;
    errorEl.dataset.code = "not_connected";
  }
  updateButtons();
}

searchEl.addEventListener("input", debounce(() => void refresh(), 250));
searchEl.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") void refresh();
});
categoryEl.addEventListener("change", () => void refresh());
refreshEl.addEventListener("click", () => void refresh());
onTransfersChanged(updateButtons);

/** Refreshes ~300 ms after the last `indexChanged`. */
export const refreshSoon = debounce(() => void refresh(), 300);

/** @returns {Category | null} */
function currentCategory() {
  const v = categoryEl.value;
  return v === "audio" || v === "video" || v === "image" || v === "other" ? v : null;
}

/** Fetches the list again with the current search and category. */
export async function refresh() {
  const seq = ++requestSeq;
  const query = searchEl.value.trim();
  const category = currentCategory();
  refreshEl.classList.add("busy");
  refreshEl.setAttribute("aria-busy", "true");
  try {
    const result = query ? await api.searchFiles(query, category) : await api.listFiles(category);
    if (seq !== requestSeq) return;
    files = result;
    loaded = true;
    errorEl.hidden = true;
    render();
  } catch (e) {
    if (seq !== requestSeq) return;
    // Offline with a list on screen: "the connection was lost" (setStale) says more than
    // "not connected" from a refresh that raced the disconnection.
    if (stale && files.length && errorCode(e) === "not_connected") {
      render();
      return;
    }
    setText(errorTextEl, errorText(e));
    errorEl.hidden = false;
    errorEl.dataset.code = errorCode(e) ?? "";
    render();
  } finally {
    if (seq === requestSeq) {
      refreshEl.classList.remove("busy");
      refreshEl.removeAttribute("aria-busy");
    }
  }
}

/**
 * Makes the list's rows `rows`, in order, moving only the rows out of place: a row taken out
 * of the page between a press and its release loses the click (a refresh while someone
 * clicked Watch did nothing, seen in the WebDriver tests), so rows in place stay put.
 * @param {HTMLLIElement[]} rows
 */
function placeRows(rows) {
  rows.forEach((row, i) => {
    const at = listEl.children[i];
    if (at !== row) listEl.insertBefore(row, at ?? null);
  });
  while (listEl.children.length > rows.length) listEl.lastElementChild?.remove();
}

function render() {
  const searching = searchEl.value.trim() !== "" || currentCategory() !== null;
  const byHash = new Map();
  for (const el of listEl.querySelectorAll(".network-file")) {
    if (el instanceof HTMLLIElement && el.dataset.infoHash) byHash.set(el.dataset.infoHash, el);
  }
  const rows = files.map((file) => {
    const old = byHash.get(file.infoHash);
    // Keep the row (and its focus) when nothing about the file changed.
    if (old && old.dataset.sig === signature(file)) return old;
    return fileRow(file);
  });
  placeRows(rows);
  updateButtons();

  setText(countEl, loaded && files.length ? String(files.length) : "");
  const failed = !errorEl.hidden;
  const showEmpty = files.length === 0 && (loaded || failed);
  emptyEl.hidden = !showEmpty;
  if (!showEmpty) return;
  if (failed) {
    const waiting = errorEl.dataset.code === "not_connected";
    setText(emptyTextEl, waiting ? "Waiting for the connection" : "The list could not be loaded");
    setText(emptyHintEl, waiting
      ? "The list fills in by itself once Shoal is connected."
      : "Press Refresh to try again.");
  } else {
    setText(emptyTextEl, searching ? "No matches" : "Nothing shared on this network yet");
    setText(emptyHintEl, searching
      ? "Try another word or pick All in the category list."
      : "Files shared by anyone connected to the same server show up here.");
  }
}

/** @param {NetworkFile} f */
function signature(f) {
  return `${f.name}\u0000${f.size}\u0000${f.category}\u0000${f.holders}\u0000${f.partialHolders}\u0000${f.mine}`;
}

/** Sets each Download and Watch button from `mine` and the running transfers. */
function updateButtons() {
  for (const row of listEl.querySelectorAll(".network-file")) {
    if (!(row instanceof HTMLElement)) continue;
    const watch = row.querySelector("button.watch");
    if (watch instanceof HTMLButtonElement) {
      // A file of your own plays from disk; others need the network.
      watch.disabled = stale && row.dataset.mine !== "true";
      watch.title = watch.disabled ? "Not connected: wait for Shoal to reconnect"
        : row.dataset.mine === "true" ? "Play your copy" : "Play it while it downloads";
    }
    const room = row.querySelector("button.open-room");
    if (room instanceof HTMLButtonElement) {
      // A room lives on the server: it needs the connection.
      room.disabled = stale;
      room.title = stale ? "Not connected: wait for Shoal to reconnect"
        : "Watch together: open a room";
    }
    const button = row.querySelector("button.download");
    if (!(button instanceof HTMLButtonElement)) continue;
    const hash = row.dataset.infoHash ?? "";
    const mine = row.dataset.mine === "true";
    const busy = starting.has(hash) || isDownloading(hash);
    /** @type {[string, boolean, string]} label, disabled, state */
    const [label, disabled, state] = mine
      ? ["Yours", true, "mine"]
      : busy ? ["Downloading…", true, "downloading"]
      : stale ? ["Download", true, "stale"] : ["Download", false, "idle"];
    if (button.dataset.state !== state) {
      button.dataset.state = state;
      button.disabled = disabled;
      button.replaceChildren(icon(mine ? "check" : "download"), h("span", { text: label }));
      button.title = mine ? "You share this file"
        : busy ? "A download of this file is running"
        : stale ? "Not connected: wait for Shoal to reconnect" : "Download this file";
    }
  }
}

/**
 * @param {NetworkFile} file
 * @returns {HTMLLIElement}
 */
function fileRow(file) {
  const button = h("button", { type: "button", class: "button download", "aria-label": `Download ${file.name}` });
  button.addEventListener("click", () => void startDownload(file));
  const playable = file.category === "video" || file.category === "audio";
  const watch = playable
    ? h("button", { type: "button", class: "button watch", "aria-label": `Watch ${file.name}` }, [icon("play"), h("span", { text: "Watch" })])
    : null;
  watch?.addEventListener("click", () => void watchFile(file));
  const room = playable
    ? h("button", {
      type: "button",
      class: "icon-button small open-room",
      title: "Watch together: open a room",
      "aria-label": `Open a room for ${file.name}`,
      onclick: () => void createRoom(file.infoHash),
    }, [icon("users")])
    : null;
  const holders = holdersText(file);
  return h("li", {
    class: "item network-file",
    dataset: { infoHash: file.infoHash, mine: String(file.mine), sig: signature(file) },
    title: file.name,
  }, [
    h("span", { class: `cat-icon cat-${file.category}` }, [icon(file.category)]),
    h("div", { class: "item-main" }, [
      h("div", { class: "item-title", text: file.name }),
      h("div", { class: "item-meta" }, [
        h("span", { class: `badge cat-badge cat-${file.category}`, text: CATEGORY_LABEL[file.category] }),
        h("span", { text: humanSize(file.size) }),
        h("span", { class: "holders", title: "Nodes that serve the whole file, and viewers that serve the part they have" }, [icon("users"), holders]),
        file.mine ? h("span", { class: "mine-note", text: "Shared by you" }) : null,
      ]),
    ]),
    h("div", { class: "item-actions" }, [room, watch, button]),
  ]);
}

/**
 * "2 holders", "1 holder + 3 partial", "2 partial".
 * @param {NetworkFile} file
 */
export function holdersText(file) {
  const whole = `${file.holders} ${file.holders === 1 ? "holder" : "holders"}`;
  if (file.partialHolders === 0) return whole;
  const partial = `${file.partialHolders} partial`;
  return file.holders === 0 ? partial : `${whole} + ${partial}`;
}

/** @param {NetworkFile} file */
async function startDownload(file) {
  starting.add(file.infoHash);
  updateButtons();
  try {
    const id = await api.download(file.infoHash);
    startPending(id, file);
  } catch (e) {
    toast(errorCode(e) === "already_downloading" ? errorText(e) : `Could not download “${file.name}”: ${errorText(e)}`, "error");
  } finally {
    starting.delete(file.infoHash);
    updateButtons();
  }
}
