// @ts-check
// "Transfers": one card per download, updated in place from `transfer` events (upsert by id).

import { api, errorText } from "./api.js";
import { byId, h, setText } from "./dom.js";
import { humanDuration, humanRate, humanSize, percent, reachText, viewVerb } from "./format.js";
import { icon } from "./icons.js";
import { toast } from "./toast.js";
import { openViewer, watchFile } from "./viewer.js";

const listEl = byId("transfers", HTMLUListElement);
const emptyEl = byId("transfers-empty", HTMLElement);
const countEl = byId("transfers-count", HTMLElement);
const clearEl = byId("transfers-clear", HTMLButtonElement);

/** @type {Map<number, {transfer: Transfer, el: HTMLLIElement}>} */
const transfers = new Map();
/** @type {Array<() => void>} */
const listeners = [];

/** @type {Record<TransferState, string>} */
const STATE_LABEL = { running: "Downloading", waiting: "Waiting", completed: "Completed", failed: "Failed", cancelled: "Cancelled" };

/** @param {TransferState} state */
const isActive = (state) => state === "running" || state === "waiting";

clearEl.addEventListener("click", async () => {
  try {
    await api.clearFinished();
  } catch (e) {
    toast(errorText(e), "error");
    return;
  }
  for (const [id, entry] of transfers) {
    if (!isActive(entry.transfer.state)) {
      entry.el.remove();
      transfers.delete(id);
    }
  }
  refreshChrome();
  notify();
});

/**
 * Called whenever the set of running downloads may have changed.
 * @param {() => void} fn
 */
export function onTransfersChanged(fn) {
  listeners.push(fn);
}

function notify() {
  for (const fn of listeners) fn();
}

/**
 * Whether a download of this content is running.
 * @param {string} infoHash
 */
export function isDownloading(infoHash) {
  for (const { transfer } of transfers.values()) {
    if (transfer.infoHash === infoHash && isActive(transfer.state)) return true;
  }
  return false;
}

/**
 * The transfer with this id, as last heard.
 * @param {number} id
 * @returns {Transfer | null}
 */
export function transferById(id) {
  return transfers.get(id)?.transfer ?? null;
}

/** @param {Transfer[]} list */
export function setTransfers(list) {
  for (const { el } of transfers.values()) el.remove();
  transfers.clear();
  for (const t of list) upsertTransfer(t, false);
  refreshChrome();
  notify();
}

/**
 * Shows a just-started download before its first event arrives.
 * @param {number} id
 * @param {NetworkFile} file
 */
export function startPending(id, file) {
  if (transfers.has(id)) return;
  upsertTransfer({
    id,
    infoHash: file.infoHash,
    name: file.name,
    state: "running",
    bytesDone: 0,
    lenBytes: file.size,
    rateBytesPerSec: 0,
    sentBytes: 0,
    uploadRateBytesPerSec: 0,
    peersServed: 0,
    etaSecs: null,
    peers: [],
    path: null,
    problem: null,
    category: file.category,
    mime: file.mime,
  }, false);
}

/**
 * Inserts or updates one transfer.
 * @param {Transfer} transfer
 * @param {boolean} [announce]  say so when it completes or fails
 */
export function upsertTransfer(transfer, announce = true) {
  const existing = transfers.get(transfer.id);
  // Progress ticks change only numbers; listeners care about new transfers and new states.
  const changed = !existing || existing.transfer.state !== transfer.state || existing.transfer.infoHash !== transfer.infoHash;
  if (existing) {
    const before = existing.transfer.state;
    existing.transfer = transfer;
    if (before !== transfer.state) {
      // The actions change with the state: rebuild the card, keep its place.
      const el = transferCard(transfer);
      existing.el.replaceWith(el);
      existing.el = el;
      if (announce) announceState(transfer);
    }
    updateCard(existing.el, transfer);
  } else {
    const el = transferCard(transfer);
    updateCard(el, transfer);
    transfers.set(transfer.id, { transfer, el });
    // Newest first.
    const after = [...transfers.keys()].filter((id) => id > transfer.id).sort((a, b) => a - b)[0];
    const next = after === undefined ? null : transfers.get(after)?.el ?? null;
    if (next) {
      next.after(el);
    } else {
      listEl.prepend(el);
    }
  }
  if (changed) {
    refreshChrome();
    notify();
  }
}

/** @param {Transfer} t */
function announceState(t) {
  if (t.state === "completed") toast(`Downloaded “${t.name}”`, "success");
  if (t.state === "failed") toast(`“${t.name}” failed: ${problemText(t)}`, "error");
}

/**
 * Why a download waits or stopped, in words chosen from the problem's kind and the state.
 * @param {Transfer} t
 * @returns {string}
 */
function problemText(t) {
  const waiting = t.state === "waiting";
  const p = t.problem;
  switch (p?.kind) {
    case "noServer":
      return "Waiting for the signaling server";
    case "sharerGone":
      return waiting
        ? "The sharer stopped sharing or went offline; Shoal will resume when it is back"
        : "The sharer stopped sharing or went offline. Try again when it is back";
    case "notResumed":
      return "Not resumed: resuming by itself is off in Settings. Try again to resume it";
    case "diskFull":
      return "The disk is full. Free some space, then Try again.";
    case "storage":
      return "The file could not be written (check the download folder in Settings), then Try again.";
    case "other":
      return p.message;
    default:
      return waiting ? "Waiting for the sharer" : "The download failed.";
  }
}

function refreshChrome() {
  const all = [...transfers.values()];
  const running = all.filter((e) => isActive(e.transfer.state)).length;
  emptyEl.hidden = all.length > 0;
  clearEl.hidden = all.length === running;
  setText(countEl, running ? `${running} active` : all.length ? String(all.length) : "");
}

/**
 * The card's structure for its state; `updateCard` fills in the numbers.
 * @param {Transfer} t
 * @returns {HTMLLIElement}
 */
function transferCard(t) {
  const verb = viewVerb(t.category);
  /** @type {HTMLElement[]} */
  const actions = [];
  if (t.state === "running" && (t.category === "video" || t.category === "audio")) {
    // Plays while it downloads (issue 10).
    actions.push(actionButton("watch", "play", "Watch",
      async () => watchFile({ infoHash: t.infoHash, name: t.name, category: t.category }), "primary"));
  }
  if (isActive(t.state)) {
    actions.push(actionButton("cancel", "x", "Cancel", async () => api.cancel(t.id), "ghost"));
  }
  if (t.state === "completed" && t.path) {
    const path = t.path;
    if (verb) {
      actions.push(actionButton("play", t.category === "image" ? "eye" : "play", verb,
        async () => openViewer({ name: t.name, path, category: t.category }), "primary"));
    }
    actions.push(actionButton("open", "external", "Open", async () => api.openFile(path)));
    actions.push(actionButton("reveal", "folder", "Show in folder", async () => api.showInFolder(path)));
  }
  if (t.state === "failed" || t.state === "cancelled") {
    // The same card carries on (same id): no duplicate.
    actions.push(actionButton("retry", "refresh", "Try again", async () => api.retry(t.id)));
  }

  return h("li", {
    class: `item transfer state-${t.state}`,
    dataset: { transferId: String(t.id), state: t.state, infoHash: t.infoHash },
  }, [
    h("div", { class: "transfer-head" }, [
      h("span", { class: `cat-icon cat-${t.category}` }, [icon(t.category)]),
      h("div", { class: "item-main" }, [
        h("div", { class: "item-title", text: t.name, title: t.name }),
        h("div", { class: "item-meta" }, [
          h("span", { class: `state-pill state-${t.state}`, text: STATE_LABEL[t.state] }),
          h("span", { class: "transfer-sub" }),
        ]),
      ]),
    ]),
    t.state === "running" || t.state === "waiting" || t.state === "cancelled"
      ? h("div", { class: "progress-row" }, [
          h("div", {
            class: "progress",
            role: "progressbar",
            "aria-label": `Progress of ${t.name}`,
            "aria-valuemin": "0",
            "aria-valuemax": "100",
          }, [h("div", { class: "progress-fill" })]),
          h("span", { class: "progress-pct" }),
        ])
      : null,
    t.state === "running" ? h("div", { class: "transfer-stats" }) : null,
    t.state === "running" ? h("ul", { class: "peer-list", "aria-label": "Peers" }) : null,
    t.state === "failed"
      ? h("p", { class: "transfer-error" }, [icon("alert"), h("span", { text: problemText(t) })])
      : null,
    t.state === "waiting" ? h("p", { class: "transfer-note", text: problemText(t) }) : null,
    h("p", { class: "action-status", role: "status", hidden: true }),
    actions.length ? h("div", { class: "transfer-actions" }, actions) : null,
  ]);
}

/**
 * A button that runs a command and shows its error under the card.
 * @param {string} cls  test hook class: watch | cancel | open | reveal | play | retry
 * @param {import("./icons.js").IconName} iconName
 * @param {string} label
 * @param {() => Promise<unknown>} run
 * @param {string} [variant]
 * @returns {HTMLButtonElement}
 */
function actionButton(cls, iconName, label, run, variant = "") {
  const button = h("button", { type: "button", class: `button small ${variant} ${cls}`.trim() }, [icon(iconName), h("span", { text: label })]);
  button.addEventListener("click", async () => {
    const card = button.closest(".transfer");
    const status = card?.querySelector(".action-status");
    if (status instanceof HTMLElement) {
      status.hidden = true;
      status.textContent = "";
    }
    button.disabled = true;
    try {
      await run();
    } catch (e) {
      if (status instanceof HTMLElement) {
        status.textContent = errorText(e);
        status.hidden = false;
      } else {
        toast(errorText(e), "error");
      }
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/**
 * Fills in the changing numbers of a card.
 * @param {HTMLLIElement} el
 * @param {Transfer} t
 */
function updateCard(el, t) {
  el.dataset.state = t.state;
  el.dataset.infoHash = t.infoHash;
  const pct = percent(t.bytesDone, t.lenBytes);

  const sub = el.querySelector(".transfer-sub");
  if (sub) {
    let text;
    if (t.state === "running") text = `${humanSize(t.bytesDone)} of ${humanSize(t.lenBytes)}`;
    // Where it was saved: a repeat download gets a new name ("film (1).mkv").
    else if (t.state === "completed") text = t.path ? `${humanSize(t.lenBytes)} · saved as ${t.path}` : humanSize(t.lenBytes);
    else if (t.state === "cancelled") text = `Stopped at ${humanSize(t.bytesDone)} of ${humanSize(t.lenBytes)}`;
    else if (t.state === "waiting") text = `${humanSize(t.bytesDone)} of ${humanSize(t.lenBytes)} · resumes by itself`;
    else text = `${humanSize(t.bytesDone)} of ${humanSize(t.lenBytes)}`;
    setText(sub, text);
  }

  const note = el.querySelector(".transfer-note");
  if (note && t.state === "waiting") setText(note, problemText(t));

  const bar = el.querySelector(".progress");
  const fill = el.querySelector(".progress-fill");
  if (bar) bar.setAttribute("aria-valuenow", String(pct));
  if (fill instanceof HTMLElement) fill.style.width = `${pct}%`;
  const pctEl = el.querySelector(".progress-pct");
  if (pctEl) setText(pctEl, `${pct} %`);

  const stats = el.querySelector(".transfer-stats");
  if (stats) {
    const parts = [
      statPart("Speed", humanRate(t.rateBytesPerSec)),
      statPart("Time left", t.etaSecs === null ? "—" : humanDuration(t.etaSecs)),
      statPart("Peers", String(t.peers.length)),
      // Viewers serve each other: what this download gave others from the pieces it has.
      statPart("Shared", t.peersServed > 0
        ? `${humanSize(t.sentBytes)} to ${t.peersServed} ${t.peersServed === 1 ? "peer" : "peers"}`
          + (t.uploadRateBytesPerSec > 0 ? ` · ↑ ${humanRate(t.uploadRateBytesPerSec)}` : "")
        : "—"),
    ];
    const sig = parts.map((p) => p.textContent).join("|");
    if (stats.getAttribute("data-sig") !== sig) {
      stats.setAttribute("data-sig", sig);
      stats.replaceChildren(...parts);
    }
  }

  const peers = el.querySelector(".peer-list");
  if (peers) {
    const sig = t.peers.map((p) => `${p.peer}:${p.candidateType}`).join(",");
    if (peers.getAttribute("data-sig") !== sig) {
      peers.setAttribute("data-sig", sig);
      peers.replaceChildren(...(t.peers.length
        ? t.peers.map((p) => h("li", { class: `peer reach-${p.candidateType}`, title: p.peer }, [
            h("code", { text: p.peer.length > 10 ? p.peer.slice(0, 8) : p.peer }),
            h("span", { class: "reach", text: reachText(p.candidateType) }),
          ]))
        : [h("li", { class: "peer peer-waiting", text: "Looking for peers…" })]));
    }
  }
}

/**
 * @param {string} label
 * @param {string} value
 */
function statPart(label, value) {
  return h("span", { class: "stat" }, [h("span", { class: "stat-label", text: label }), h("span", { class: "stat-value", text: value })]);
}
