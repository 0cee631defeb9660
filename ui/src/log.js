// @ts-check
// Log panel: time, level, message; at most MAX_LINES lines; Clear empties the view only.

import { byId, h, setText } from "./dom.js";
import { clockTime } from "./format.js";

const MAX_LINES = 500;

const listEl = byId("log", HTMLOListElement);
const emptyEl = byId("log-empty", HTMLElement);
const countEl = byId("log-count", HTMLElement);
const clearEl = byId("log-clear", HTMLButtonElement);
const badgeEl = byId("log-badge", HTMLElement);
const scrollEl = /** @type {HTMLElement} */ (listEl.parentElement);

/** Warnings and errors that arrived while the log was not in view. */
let unseen = 0;
let visible = false;

/** @type {Record<LogLevel, string>} */
const LEVEL_LABEL = { info: "INFO", warn: "WARN", error: "ERROR" };

clearEl.addEventListener("click", () => {
  listEl.replaceChildren();
  refreshChrome();
});

/** @param {LogEntry[]} entries */
export function setLog(entries) {
  listEl.replaceChildren(...entries.slice(-MAX_LINES).map(line));
  refreshChrome();
  scrollToEnd();
}

/** @param {LogEntry} entry */
export function appendLog(entry) {
  const atEnd = scrollEl.scrollHeight - scrollEl.scrollTop - scrollEl.clientHeight < 24;
  listEl.append(line(entry));
  while (listEl.children.length > MAX_LINES) listEl.firstElementChild?.remove();
  if (!visible && entry.level !== "info") {
    unseen += 1;
    badgeEl.dataset.level = entry.level === "error" || badgeEl.dataset.level === "error" ? "error" : "warn";
  }
  refreshChrome();
  if (atEnd) scrollToEnd();
}

/**
 * The log tab was shown or hidden.
 * @param {boolean} shown
 */
export function setLogVisible(shown) {
  visible = shown;
  if (shown) {
    unseen = 0;
    delete badgeEl.dataset.level;
    scrollToEnd();
  }
  refreshChrome();
}

function scrollToEnd() {
  scrollEl.scrollTop = scrollEl.scrollHeight;
}

function refreshChrome() {
  const n = listEl.children.length;
  emptyEl.hidden = n > 0;
  setText(countEl, n ? `${n} ${n === 1 ? "line" : "lines"}` : "");
  badgeEl.hidden = unseen === 0;
  setText(badgeEl, unseen > 99 ? "99+" : String(unseen));
  badgeEl.setAttribute("aria-label", `${unseen} new warnings or errors`);
}

/**
 * @param {LogEntry} entry
 * @returns {HTMLLIElement}
 */
function line(entry) {
  return h("li", { class: `log-line level-${entry.level}` }, [
    h("time", { class: "log-time", datetime: new Date(entry.timeMs).toISOString(), text: clockTime(entry.timeMs) }),
    h("span", { class: "log-level", text: LEVEL_LABEL[entry.level] ?? String(entry.level).toUpperCase() }),
    h("span", { class: "log-message", text: entry.message }),
  ]);
}
