// @ts-check
// "My shares": files being hashed (with progress) and files shared, each with a Remove button.

import { api, errorText } from "./api.js";
import { byId, copyButton, h, setText } from "./dom.js";
import { CATEGORY_LABEL, humanRate, humanSize, percent, shortHash, viewVerb } from "./format.js";
import { icon } from "./icons.js";
import { toast } from "./toast.js";
import { createRoom } from "./room.js";
import { openViewer } from "./viewer.js";

const listEl = byId("my-shares", HTMLUListElement);
const emptyEl = byId("shares-empty", HTMLElement);
const dropNoteEl = byId("shares-drop-note", HTMLElement);
const countEl = byId("shares-count", HTMLElement);
const shareButton = byId("share-button", HTMLButtonElement);

/** Shared files by info hash, in the order they arrived. @type {Map<string, {share: Share, el: HTMLLIElement}>} */
const shares = new Map();
/** Files being hashed, by path. @type {Map<string, {hashing: Hashing, el: HTMLLIElement}>} */
const hashing = new Map();

shareButton.addEventListener("click", async () => {
  shareButton.disabled = true;
  try {
    await api.pickAndShare();
  } catch (e) {
    toast(errorText(e), "error");
  } finally {
    shareButton.disabled = false;
  }
});

/**
 * Shares the files just dropped on the window. The page never names the paths: the Rust
 * side took them from the window system's drop event.
 */
export async function shareDropped() {
  try {
    await api.shareDropped();
  } catch (e) {
    toast(errorText(e), "error");
  }
}

/** @param {Share[]} list */
export function setShares(list) {
  for (const { el } of shares.values()) el.remove();
  shares.clear();
  for (const share of list) addShare(share, false);
  refreshChrome();
}

/**
 * A file is now shared: it replaces its hashing row.
 * @param {Share} share
 * @param {boolean} [announce]
 */
export function addShare(share, announce = true) {
  const hashingEntry = hashing.get(share.path) ?? findHashingByNameAndSize(share);
  if (hashingEntry) {
    hashing.delete(hashingEntry.hashing.path);
    hashingEntry.el.remove();
  }
  const existing = shares.get(share.infoHash);
  const el = shareItem(share);
  if (existing) {
    existing.el.replaceWith(el);
  } else {
    listEl.append(el);
  }
  shares.set(share.infoHash, { share, el });
  updateUpload(share.upload);
  if (announce && !existing) toast(`Sharing “${share.name}”`, "success");
  refreshChrome();
}

/**
 * What a share serves: shown under its name while anyone has fetched from it.
 * @param {Upload} upload
 */
export function updateUpload(upload) {
  const entry = shares.get(upload.infoHash);
  if (!entry) return;
  entry.share.upload = upload;
  const el = entry.el.querySelector(".share-upload");
  if (!(el instanceof HTMLElement)) return;
  el.hidden = upload.sentBytes === 0 && upload.peers === 0;
  const peers = `${upload.peers} ${upload.peers === 1 ? "peer" : "peers"}`;
  const rate = upload.rateBytesPerSec > 0 ? `↑ ${humanRate(upload.rateBytesPerSec)} to ${peers}` : `${peers} connected`;
  const served = `${upload.peersServed} ${upload.peersServed === 1 ? "peer" : "peers"}`;
  // "Served 2.4 times": the bytes sent in copies of the file.
  const times = entry.share.size > 0 ? upload.sentBytes / entry.share.size : 0;
  const copies = times >= 0.1 ? ` · served ${times.toFixed(1)} times` : "";
  setText(el, `${rate} · ${humanSize(upload.sentBytes)} sent to ${served}${copies}`);
}

/**
 * @param {string} infoHash
 * @param {string | null} reason  why the node stopped sharing it, if it was not the user
 */
export function removeShare(infoHash, reason) {
  const entry = shares.get(infoHash);
  if (!entry) return;
  entry.el.remove();
  shares.delete(infoHash);
  if (reason) toast(`“${entry.share.name}” is no longer shared: ${reason}`, "error");
  refreshChrome();
}

/** @param {Hashing[]} list  files being hashed at start-up */
export function setHashing(list) {
  for (const { el } of hashing.values()) el.remove();
  hashing.clear();
  for (const progress of list) updateHashing(progress);
  refreshChrome();
}

/**
 * Sharing a file failed before it was hashed: drop its progress row and say why.
 * @param {string} path
 * @param {string | null} reason
 */
export function hashingFailed(path, reason) {
  const entry = hashing.get(path);
  const name = entry?.hashing.name ?? path.split(/[\\/]/).pop() ?? path;
  if (entry) {
    entry.el.remove();
    hashing.delete(path);
  }
  toast(reason ? `Could not share “${name}”: ${reason}` : `Could not share “${name}”.`, "error");
  refreshChrome();
}

/** @param {Hashing} progress */
export function updateHashing(progress) {
  let entry = hashing.get(progress.path);
  if (!entry) {
    entry = { hashing: progress, el: hashingItem(progress) };
    hashing.set(progress.path, entry);
    listEl.prepend(entry.el);
  }
  entry.hashing = progress;
  const pct = percent(progress.bytesDone, progress.lenBytes);
  const bar = entry.el.querySelector(".progress");
  const fill = entry.el.querySelector(".progress-fill");
  const status = entry.el.querySelector(".hashing-status");
  if (fill instanceof HTMLElement) fill.style.width = `${pct}%`;
  if (bar) bar.setAttribute("aria-valuenow", String(pct));
  if (status) {
    setText(status, progress.bytesDone >= progress.lenBytes
      ? "Finishing…"
      : `Preparing · ${pct} % of ${humanSize(progress.lenBytes)}`);
  }
  refreshChrome();
}

/**
 * The share with this info hash, if this node shares it.
 * @param {string} infoHash
 * @returns {Share | undefined}
 */
export function shareByHash(infoHash) {
  return shares.get(infoHash)?.share;
}

/**
 * A hashing row whose path was written differently (symlinks, normalisation) but is clearly the
 * same file.
 * @param {Share} share
 */
function findHashingByNameAndSize(share) {
  for (const entry of hashing.values()) {
    if (entry.hashing.name === share.name && entry.hashing.lenBytes === share.size) return entry;
  }
  return undefined;
}

function refreshChrome() {
  const n = shares.size;
  const busy = hashing.size;
  emptyEl.hidden = n + busy > 0;
  dropNoteEl.hidden = n + busy === 0;
  setText(countEl, n ? String(n) : "");
}

/**
 * @param {Hashing} progress
 * @returns {HTMLLIElement}
 */
function hashingItem(progress) {
  return h("li", { class: "item hashing", dataset: { path: progress.path }, title: progress.path }, [
    h("span", { class: "cat-icon cat-other pulse" }, [icon("other")]),
    h("div", { class: "item-main" }, [
      h("div", { class: "item-title", text: progress.name }),
      h("div", { class: "progress small", role: "progressbar", "aria-label": `Preparing ${progress.name}`, "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" }, [
        h("div", { class: "progress-fill" }),
      ]),
      h("div", { class: "item-meta hashing-status", text: "Preparing…" }),
    ]),
  ]);
}

/**
 * @param {Share} share
 * @returns {HTMLLIElement}
 */
function shareItem(share) {
  const verb = share.missing ? null : viewVerb(share.category);
  const remove = h("button", {
    type: "button",
    class: "icon-button small remove danger",
    title: "Remove (stop sharing)",
    "aria-label": `Stop sharing ${share.name}`,
  }, [icon("trash")]);
  remove.addEventListener("click", async () => {
    remove.disabled = true;
    try {
      await api.unshare(share.infoHash);
      // The `unshared` event removes the row; remove it now too in case the event lags.
      removeShare(share.infoHash, null);
    } catch (e) {
      remove.disabled = false;
      toast(errorText(e), "error");
    }
  });

  return h("li", {
    class: share.missing ? "item share missing" : "item share",
    dataset: { infoHash: share.infoHash, state: share.missing ? "missing" : "shared" },
    title: share.path,
  }, [
    h("span", { class: `cat-icon cat-${share.category}`, title: CATEGORY_LABEL[share.category] }, [icon(share.category)]),
    h("div", { class: "item-main" }, [
      h("div", { class: "item-title-row" }, [
        h("span", { class: "item-title", text: share.name }),
        h("div", { class: "item-actions" }, [
          verb ? h("button", {
            type: "button",
            class: "icon-button small preview",
            title: verb,
            "aria-label": `${verb} ${share.name}`,
            onclick: () => openViewer(share),
          }, [icon(share.category === "image" ? "eye" : "play")]) : null,
          !share.missing && (share.category === "video" || share.category === "audio") ? h("button", {
            type: "button",
            class: "icon-button small open-room",
            title: "Watch together: open a room",
            "aria-label": `Open a room for ${share.name}`,
            onclick: () => createRoom(share.infoHash),
          }, [icon("users")]) : null,
          remove,
        ]),
      ]),
      share.missing ? h("p", { class: "share-missing", text: `${share.missing}. Not shared until it is back; Remove forgets it.` }) : null,
      h("p", { class: "share-upload", hidden: true }),
      h("div", { class: "item-meta" }, [
        h("span", { text: humanSize(share.size) }),
        h("span", { class: "hash-chip", title: `Info hash ${share.infoHash}` }, [
          h("code", { text: shortHash(share.infoHash, 6, 4) }),
          copyButton(() => share.infoHash, "Info hash", "tiny"),
        ]),
      ]),
    ]),
  ]);
}
