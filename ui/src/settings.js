// @ts-check
// Settings form: signaling server (or host it here), STUN/TURN servers, download folder.

import { api, errorText } from "./api.js";
import { byId, h, setText } from "./dom.js";
import { icon } from "./icons.js";

const formEl = byId("settings-form", HTMLFormElement);
const serverUrlEl = byId("settings-server-url", HTMLInputElement);
const serverUrlHintEl = byId("settings-server-url-hint", HTMLElement);
const hostEl = byId("settings-host", HTMLInputElement);
const portEl = byId("settings-port", HTMLInputElement);
const stunEl = byId("settings-stun", HTMLTextAreaElement);
const turnEl = byId("settings-turn", HTMLElement);
const turnEmptyEl = byId("settings-turn-empty", HTMLElement);
const turnAddEl = byId("settings-turn-add", HTMLButtonElement);
const dirEl = byId("settings-download-dir", HTMLInputElement);
const nameEl = byId("settings-display-name", HTMLInputElement);
const resumeEl = byId("settings-resume", HTMLInputElement);
const shareDownloadsEl = byId("settings-share-downloads", HTMLInputElement);
const maxUploadEl = byId("settings-max-upload", HTMLInputElement);
const maxDownloadEl = byId("settings-max-download", HTMLInputElement);
const hostProblemEl = byId("settings-host-problem", HTMLElement);

/**
 * Says under the host switch why the app does not host.
 * @param {HostingProblem | null} problem
 */
export function showHostingProblem(problem) {
  hostProblemEl.hidden = !problem;
  hostProblemEl.textContent = problem ? problem.message : "";
}
const chooseEl = byId("settings-download-choose", HTMLButtonElement);
const saveEl = byId("settings-save", HTMLButtonElement);
const revertEl = byId("settings-revert", HTMLButtonElement);
const statusEl = byId("settings-status", HTMLElement);

const URL_HINT_CLIENT = "The address the host of your network gave you, e.g. ws://192.168.1.20:7878.";
const URL_HINT_HOSTING = "This app hosts the server; others connect to the address shown above";

/** The settings the app runs with (last applied). @type {Settings | null} */
let applied = null;
/** True once the user edited the form and has not saved. */
let dirty = false;
/** @type {((state: AppState) => void) | null} */
let onSaved = null;

/**
 * Called with the AppState that save_settings returns.
 * @param {(state: AppState) => void} fn
 */
export function onSettingsSaved(fn) {
  onSaved = fn;
}

formEl.addEventListener("input", markDirty);
formEl.addEventListener("change", markDirty);
hostEl.addEventListener("change", syncHostFields);
turnAddEl.addEventListener("click", () => {
  const row = turnRow({ url: "", username: "", credential: "" });
  turnEl.append(row);
  syncTurnEmpty();
  markDirty();
  row.querySelector("input")?.focus();
});
chooseEl.addEventListener("click", async () => {
  chooseEl.disabled = true;
  try {
    const dir = await api.pickFolder();
    if (dir) {
      dirEl.value = dir;
      dirEl.title = dir;
      markDirty();
    }
  } catch (e) {
    showStatus(errorText(e), "error");
  } finally {
    chooseEl.disabled = false;
  }
});
revertEl.addEventListener("click", () => {
  if (applied) fill(applied);
  dirty = false;
  revertEl.disabled = true;
  showStatus("", "");
});
formEl.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const read = readForm();
  if (typeof read === "string") {
    showStatus(read, "error");
    return;
  }
  saveEl.disabled = true;
  showStatus("Saving…", "busy");
  try {
    const state = await api.saveSettings(read);
    dirty = false;
    revertEl.disabled = true;
    applySettings(state.settings);
    onSaved?.(state);
    showStatus("Saved", "ok");
  } catch (e) {
    showStatus(errorText(e), "error");
  } finally {
    saveEl.disabled = false;
  }
});

/**
 * Shows settings from the app (start-up, `settings` events). Unsaved edits are kept.
 * @param {Settings} settings
 */
export function applySettings(settings) {
  applied = settings;
  if (!dirty) fill(settings);
}

/** @param {Settings} s */
function fill(s) {
  serverUrlEl.value = s.serverUrl;
  hostEl.checked = s.host;
  portEl.value = String(s.hostPort);
  stunEl.value = s.stunServers.join("\n");
  turnEl.replaceChildren(...s.turnServers.map(turnRow));
  dirEl.value = s.downloadDir;
  dirEl.title = s.downloadDir;
  nameEl.value = s.displayName;
  resumeEl.checked = s.resumeDownloads;
  shareDownloadsEl.checked = s.shareDownloads;
  maxUploadEl.value = s.maxUploadMiBps === null ? "" : String(s.maxUploadMiBps);
  maxDownloadEl.value = s.maxDownloadMiBps === null ? "" : String(s.maxDownloadMiBps);
  syncHostFields();
  syncTurnEmpty();
}

function markDirty() {
  dirty = true;
  revertEl.disabled = false;
  if (statusEl.dataset.kind === "ok") showStatus("", "");
}

function syncHostFields() {
  const hosting = hostEl.checked;
  serverUrlEl.disabled = hosting;
  portEl.disabled = !hosting;
  setText(serverUrlHintEl, hosting ? URL_HINT_HOSTING : URL_HINT_CLIENT);
  serverUrlHintEl.classList.toggle("hint-info", hosting);
}

function syncTurnEmpty() {
  turnEmptyEl.hidden = turnEl.children.length > 0;
}

/**
 * @param {string} text
 * @param {"ok" | "error" | "busy" | ""} kind
 */
function showStatus(text, kind) {
  statusEl.dataset.kind = kind;
  statusEl.replaceChildren();
  if (kind === "ok") statusEl.append(icon("check"));
  if (kind === "error") statusEl.append(icon("alert"));
  if (text) statusEl.append(h("span", { text }));
}

/**
 * One TURN server: url, username, credential, remove.
 * @param {TurnServer} t
 * @returns {HTMLElement}
 */
function turnRow(t) {
  const row = h("div", { class: "turn-row" }, [
    h("input", { class: "input mono turn-url", type: "text", placeholder: "turn:turn.example.org:3478", value: t.url, "aria-label": "TURN server URL", spellcheck: "false" }),
    h("input", { class: "input turn-username", type: "text", placeholder: "Username", value: t.username, "aria-label": "TURN username", autocomplete: "off", spellcheck: "false" }),
    h("input", { class: "input turn-credential", type: "password", placeholder: "Credential", value: t.credential, "aria-label": "TURN credential", autocomplete: "off" }),
  ]);
  const remove = h("button", { type: "button", class: "icon-button danger turn-remove", title: "Remove this TURN server", "aria-label": "Remove this TURN server" }, [icon("trash")]);
  remove.addEventListener("click", () => {
    row.remove();
    syncTurnEmpty();
    markDirty();
  });
  row.append(remove);
  return row;
}

/**
 * The form as Settings, or a sentence saying what to fix.
 * @returns {Settings | string}
 */
function readForm() {
  const host = hostEl.checked;
  const serverUrl = serverUrlEl.value.trim();
  const portText = portEl.value.trim();
  const hostPort = portText === "" ? NaN : Number(portText);
  if (host && (!Number.isInteger(hostPort) || hostPort < 0 || hostPort > 65535)) {
    portEl.focus();
    return "The host port must be a whole number from 0 to 65535.";
  }
  if (!host && !/^wss?:\/\/\S+$/i.test(serverUrl)) {
    serverUrlEl.focus();
    return "Enter the server URL, starting with ws:// or wss://.";
  }
  const stunServers = stunEl.value.split("\n").map((s) => s.trim()).filter(Boolean);
  const badStun = stunServers.find((s) => !/^stuns?:/i.test(s));
  if (badStun) {
    stunEl.focus();
    return `“${badStun}” is not a STUN URL; write it like stun:host:port.`;
  }
  /** @type {TurnServer[]} */
  const turnServers = [];
  for (const row of turnEl.querySelectorAll(".turn-row")) {
    const value = (/** @type {string} */ cls) => {
      const input = row.querySelector(`.${cls}`);
      return input instanceof HTMLInputElement ? input.value.trim() : "";
    };
    const url = value("turn-url");
    const username = value("turn-username");
    const credential = value("turn-credential");
    if (!url && !username && !credential) continue;
    if (!/^turns?:/i.test(url)) {
      row.querySelector("input")?.focus();
      return `“${url || "(empty)"}” is not a TURN URL; write it like turn:host:port.`;
    }
    turnServers.push({ url, username, credential });
  }
  const maxUploadMiBps = readLimit(maxUploadEl);
  if (typeof maxUploadMiBps === "string") return `Upload limit: ${maxUploadMiBps}`;
  const maxDownloadMiBps = readLimit(maxDownloadEl);
  if (typeof maxDownloadMiBps === "string") return `Download limit: ${maxDownloadMiBps}`;
  return {
    serverUrl,
    host,
    hostPort: Number.isInteger(hostPort) ? hostPort : (applied?.hostPort ?? 7878),
    stunServers,
    turnServers,
    downloadDir: dirEl.value,
    resumeDownloads: resumeEl.checked,
    shareDownloads: shareDownloadsEl.checked,
    maxUploadMiBps,
    maxDownloadMiBps,
    displayName: nameEl.value.trim(),
  };
}

/**
 * A limit field: null when empty (no limit), MiB/s when a positive number, else a sentence.
 * @param {HTMLInputElement} el
 * @returns {number | null | string}
 */
function readLimit(el) {
  const text = el.value.trim();
  if (el.validity.badInput) {
    el.focus();
    return "enter a number of MiB/s, or leave it empty for no limit.";
  }
  if (text === "") return null;
  const mibps = Number(text);
  if (!Number.isFinite(mibps) || mibps < 0.01) {
    el.focus();
    return "enter MiB/s of at least 0.01, or leave it empty for no limit.";
  }
  return mibps;
}
