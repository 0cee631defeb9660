// @ts-check
// Header: connection state (with a local countdown while disconnected) and, while this app hosts
// the signaling server, the addresses others should enter.

import { api, errorText } from "./api.js";
import { byId, copyButton, h, setText } from "./dom.js";

const connectionEl = byId("connection", HTMLElement);
const labelEl = byId("connection-label", HTMLElement);
const nodeIdEl = byId("node-id", HTMLElement);
const detailEl = byId("connection-detail", HTMLElement);
/** Screen readers hear state changes here, not every tick of the countdown. */
const announceEl = byId("connection-announce", HTMLElement);

const hostingEl = byId("hosting", HTMLElement);
const addressEl = byId("hosting-address", HTMLElement);
const copySlot = byId("hosting-copy-slot", HTMLElement);
const moreEl = byId("hosting-more", HTMLDetailsElement);
const moreLabel = byId("hosting-more-label", HTMLElement);
const listEl = byId("hosting-list", HTMLUListElement);
const problemEl = byId("hosting-problem", HTMLElement);
const problemTextEl = byId("hosting-problem-text", HTMLElement);
const problemFixEl = byId("hosting-problem-fix", HTMLButtonElement);
/** @type {HostingProblem | null} */
let problem = null;

problemFixEl.addEventListener("click", async () => {
  if (!problem) return;
  problemFixEl.disabled = true;
  try {
    await api.hostOnPort(problem.freePort ?? 0);
  } catch (e) {
    setText(problemTextEl, errorText(e));
  } finally {
    problemFixEl.disabled = false;
  }
});

/** @type {Connection} */
let connection = { state: "connecting", url: "" };
/** Wall-clock time of the next retry while disconnected. */
let retryAtMs = 0;
/** @type {number | undefined} */
let countdownTimer;
/** @type {Array<(c: Connection) => void>} */
const listeners = [];

copySlot.replaceWith(copyButton(() => addressEl.textContent ?? "", "Address", "small"));

// Close the address popover on a click elsewhere or Escape.
document.addEventListener("click", (ev) => {
  if (moreEl.open && ev.target instanceof Node && !moreEl.contains(ev.target)) moreEl.open = false;
});
moreEl.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && moreEl.open) {
    ev.stopPropagation();
    moreEl.open = false;
    moreLabel.focus();
  }
});

/**
 * Called with every new connection state (the network list refreshes on connect).
 * @param {(c: Connection) => void} fn
 */
export function onConnectionChange(fn) {
  listeners.push(fn);
}

/** @returns {Connection} */
export function currentConnection() {
  return connection;
}

/** @param {Connection} next */
export function renderConnection(next) {
  const previous = connection;
  connection = next;
  connectionEl.dataset.state = next.state;
  window.clearInterval(countdownTimer);
  countdownTimer = undefined;

  switch (next.state) {
    case "connecting":
      setText(labelEl, "Connecting…");
      nodeIdEl.hidden = true;
      setText(nodeIdEl, "");
      setText(detailEl, next.url);
      connectionEl.title = next.url ? `Connecting to ${next.url}` : "Connecting";
      break;
    case "connected":
      setText(labelEl, "Connected");
      setText(nodeIdEl, next.shortId);
      nodeIdEl.title = `Your node id: ${next.nodeId}`;
      nodeIdEl.hidden = false;
      setText(detailEl, next.url);
      connectionEl.title = `Connected to ${next.url} as ${next.nodeId}`;
      break;
    case "disconnected":
      nodeIdEl.hidden = true;
      setText(nodeIdEl, "");
      setText(detailEl, next.reason);
      connectionEl.title = `${next.url}: ${next.reason}`;
      retryAtMs = Date.now() + Math.max(0, next.retryInSecs) * 1000;
      tickCountdown();
      countdownTimer = window.setInterval(tickCountdown, 250);
      break;
  }
  if (previous.state !== next.state || previous.url !== next.url) {
    setText(announceEl, next.state === "connected" ? `Connected to ${next.url}`
      : next.state === "connecting" ? `Connecting to ${next.url}`
      : `Disconnected: ${next.reason}`);
    for (const fn of listeners) fn(next);
  }
}

function tickCountdown() {
  const secs = Math.ceil((retryAtMs - Date.now()) / 1000);
  setText(labelEl, secs > 0 ? `Disconnected — retrying in ${secs} s` : "Disconnected — retrying now…");
  if (secs <= 0) {
    window.clearInterval(countdownTimer);
    countdownTimer = undefined;
  }
}

/**
 * @param {Hosting | null} hosting
 * @param {HostingProblem | null} trouble  why hosting is on but not running
 */
export function renderHosting(hosting, trouble) {
  problem = trouble;
  problemEl.hidden = !trouble;
  if (trouble) {
    setText(problemTextEl, trouble.message);
    problemTextEl.title = trouble.message;
    setText(problemFixEl, trouble.freePort ? `Host on port ${trouble.freePort}` : "Host on any free port");
  }
  if (!hosting) {
    hostingEl.hidden = true;
    setText(addressEl, "");
    listEl.replaceChildren();
    moreEl.hidden = true;
    return;
  }
  // Without a LAN address, fall back to what the server listens on.
  const urls = hosting.shareUrls.length ? hosting.shareUrls : [`ws://${hosting.listening}`];
  hostingEl.hidden = false;
  setText(addressEl, urls[0]);
  addressEl.title = urls[0];
  const extra = urls.length - 1;
  moreEl.hidden = extra <= 0;
  setText(moreLabel, `+${extra}`);
  moreLabel.setAttribute("aria-label", `${extra} more address${extra === 1 ? "" : "es"}`);
  listEl.replaceChildren(...urls.map((url) => h("li", { class: "address-row" }, [
    h("code", { class: "address", text: url }),
    copyButton(() => url, "Address", "small"),
  ])));
}
