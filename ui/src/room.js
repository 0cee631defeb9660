// @ts-check
// The room view (issue 11): one room at a time, as its host or a member. The <video> has no
// native controls: ten times a second its state goes to `room_tick`, and what comes back
// (play, pause, seek, a playback rate) is done to it; that is how every member follows the
// host. The host has Play/Pause, a position slider and "Go on without waiting"; a member has
// none (the server refuses a member's playback message anyway). The member list shows each
// one's state, how much of the media it has, and its drift from the host.

import { api, errorText } from "./api.js";
import { byId, copyButton, h, setText } from "./dom.js";
import { playLive } from "./live.js";
import { toast } from "./toast.js";

const roomEl = byId("room", HTMLElement);
const titleEl = byId("room-title", HTMLElement);
const codeChipEl = byId("room-code-chip", HTMLElement);
const leaveEl = byId("room-leave", HTMLButtonElement);
const videoEl = byId("room-video", HTMLVideoElement);
const controlsEl = byId("room-controls", HTMLElement);
const playEl = byId("room-play", HTMLButtonElement);
const seekEl = byId("room-seek", HTMLInputElement);
const timeEl = byId("room-time", HTMLElement);
const goOnEl = byId("room-go-on", HTMLButtonElement);
const statusEl = byId("room-status", HTMLElement);
const membersEl = byId("room-members", HTMLElement);
const joinForm = byId("room-join-form", HTMLFormElement);
const liveBadgeEl = byId("room-live-badge", HTMLElement);
const liveInfoEl = byId("room-live-info", HTMLElement);
const goLiveEl = byId("room-go-live", HTMLButtonElement);
const liveVideoEl = byId("room-live-video", HTMLVideoElement);
const joinInput = byId("room-join-code", HTMLInputElement);

/** How often the player's state goes to the room, ms (sooner when the room says). */
const TICK_MS = 100;

/** @type {Room | null} */
let current = null;
/** @type {number | null} */
let timer = null;
let ticking = false;
/** The host is dragging the slider: do not move it under the pointer. */
let dragging = false;
/** What the last tick said. @type {RoomTick | null} */
let last = null;
/** A member's live player while the host streams (issue 12). @type {import("./live.js").LivePlayer | null} */
let livePlayer = null;
/** The URL `livePlayer` plays. */
let liveUrl = "";
/** When the live player last stopped on a problem (ms, `Date.now()`); 0 while it plays. */
let liveFailedAt = 0;
/** A live player that stopped on a problem starts again after this, while the room is live. */
const LIVE_RETRY_MS = 2000;

/** @returns {Room | null} */
export function currentRoom() {
  return current;
}

/** @param {number} ms */
function clock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

/**
 * Opens the room view on a room just created or joined.
 * @param {Room} room
 */
export function showRoom(room) {
  current = room;
  last = null;
  titleEl.textContent = `Room · ${room.name}`;
  titleEl.title = room.name;
  codeChipEl.replaceChildren(
    h("code", { text: room.code, title: `Link: ${room.link}` }),
    copyButton(() => room.code, "Room code", "tiny"),
  );
  controlsEl.hidden = !room.isHost;
  goOnEl.hidden = true;
  goLiveEl.hidden = !room.isHost;
  goLiveEl.textContent = "Go live";
  showLive(null);
  statusEl.textContent = room.isHost ? "You are the host: press Play when everyone is in." : "Waiting for the host…";
  membersEl.replaceChildren();
  videoEl.src = room.watch.url;
  videoEl.dataset.role = room.isHost ? "host" : "member";
  roomEl.hidden = false;
  // A tick under way schedules the next itself.
  if (timer === null && !ticking) schedule(0);
}

function hideRoom() {
  if (timer !== null) window.clearTimeout(timer);
  timer = null;
  current = null;
  showLive(null);
  videoEl.pause();
  videoEl.removeAttribute("src");
  videoEl.load();
  roomEl.hidden = true;
}

/** The player asked for data it does not have (a `waiting` event) and has not moved since. */
let waitingForData = false;
let lastTime = -1;
videoEl.addEventListener("waiting", () => { waitingForData = true; });
videoEl.addEventListener("playing", () => { waitingForData = false; });

/**
 * Whether the player can go on: it is moving, or it has the next 2 s buffered (WebKitGTK's
 * readyState stays low while a progressive video plays, so `buffered` and movement decide).
 * @returns {boolean}
 */
function isReady() {
  if (videoEl.ended) return true;
  const t = videoEl.currentTime;
  const moved = t !== lastTime;
  lastTime = t;
  if (moved) waitingForData = false;
  if (!videoEl.paused && !videoEl.seeking && moved && !waitingForData) return true;
  const end = Number.isFinite(videoEl.duration) ? videoEl.duration : Infinity;
  const want = Math.min(t + 2, end) - 0.05;
  const b = videoEl.buffered;
  for (let i = 0; i < b.length; i++) {
    if (b.start(i) <= t + 0.05 && b.end(i) >= want) return true;
  }
  return false;
}

/**
 * Ticks again in `ms`.
 * @param {number} ms
 */
function schedule(ms) {
  if (timer !== null) window.clearTimeout(timer);
  timer = window.setTimeout(() => {
    timer = null;
    void tick();
  }, Math.max(0, ms));
}

async function tick() {
  if (!current || ticking) return;
  ticking = true;
  // The room may ask for the next tick sooner: a held player must start on time, and a
  // tick up to 100 ms late would start it that late.
  let next = TICK_MS;
  try {
    /** @type {PlayerReport} */
    const player = {
      positionMs: videoEl.currentTime * 1000,
      playing: !videoEl.paused,
      seeking: videoEl.seeking,
      ready: isReady(),
      rate: videoEl.playbackRate,
    };
    const answer = await api.roomTick(player);
    if (!current) return;
    next = Math.min(TICK_MS, answer.nextTickMs);
    showLive(answer.live);
    // While a member watches the live stream the room's own player stays paused.
    if (!livePlayer) for (const action of answer.actions) apply(action);
    render(answer);
  } catch (e) {
    if (current) {
      statusEl.textContent = errorText(e);
    }
  } finally {
    ticking = false;
    if (current) schedule(next);
  }
}

/** @param {PlayerAction} action */
function apply(action) {
  switch (action.kind) {
    case "play":
      videoEl.play().catch((e) => {
        statusEl.textContent = `The player cannot start: ${e instanceof Error ? e.message : String(e)}`;
      });
      break;
    case "pause":
      videoEl.pause();
      break;
    case "seek":
      videoEl.currentTime = action.positionMs / 1000;
      break;
    case "rate":
      videoEl.playbackRate = action.rate;
      break;
  }
}

/** @param {RoomTick} t */
function render(t) {
  last = t;
  if (t.closed) {
    toast(`The room ended: ${t.closed}`, "info");
    hideRoom();
    return;
  }
  const duration = Number.isFinite(videoEl.duration) ? videoEl.duration * 1000 : 0;
  const position = t.hostPositionMs ?? videoEl.currentTime * 1000;
  if (current?.isHost) {
    playEl.textContent = t.hostWantsPlaying ? "Pause" : "Play";
    if (!dragging && duration > 0) seekEl.value = String(Math.round((position / duration) * 1000));
    setText(timeEl, `${clock(position)} / ${clock(duration)}`);
    goOnEl.hidden = !t.waitingFor;
  }
  // For tests and monitoring: the player's drift from the host as the room measures it.
  videoEl.dataset.driftMs = t.driftMs === null ? "" : String(t.driftMs);
  videoEl.dataset.roomPlaying = String(t.playing);
  const drift = t.driftMs === null ? "" : ` · drift ${t.driftMs >= 0 ? "+" : ""}${Math.round(t.driftMs)} ms`;
  let status;
  if (t.live?.hosting) status = "You are live: the room sees the stream as it is sent.";
  else if (t.live) status = "The host is live.";
  else if (t.waitingFor) status = `Waiting for ${t.waitingFor}`;
  else if (t.hostPositionMs === null) status = "Setting the clock with the host…";
  else if (t.playing) status = `Playing at ${clock(position)}${drift}`;
  else status = `Paused at ${clock(position)}${drift}`;
  setText(statusEl, status);
  membersEl.replaceChildren(...t.members.map(memberRow));
}

/**
 * Shows the room's live stream, or none: a member plays it in the live player instead of
 * the room's; the host sees the LIVE badge and "Stop live".
 * @param {LiveTick | null} live
 */
function showLive(live) {
  const url = live && !live.hosting ? live.url : null;
  const retry = liveFailedAt > 0 && Date.now() - liveFailedAt > LIVE_RETRY_MS;
  if (url !== liveUrl || (!url && livePlayer) || retry) {
    livePlayer?.stop();
    livePlayer = null;
    liveUrl = "";
    liveFailedAt = 0;
    delete liveVideoEl.dataset.problem;
    if (url) {
      videoEl.pause();
      liveUrl = url;
      livePlayer = playLive(liveVideoEl, url, (text) => {
        setText(liveInfoEl, text);
        liveVideoEl.dataset.problem = text;
        liveFailedAt = Date.now();
      });
    }
  }
  videoEl.hidden = Boolean(livePlayer);
  liveVideoEl.hidden = !livePlayer;
  liveBadgeEl.hidden = !live;
  // The room's own playback waits while its host is live.
  controlsEl.hidden = !current?.isHost || Boolean(live?.hosting);
  if (current?.isHost) goLiveEl.textContent = live?.hosting ? "Stop live" : "Go live";
  if (!live) {
    setText(liveInfoEl, "");
    return;
  }
  if (live.hosting) {
    setText(liveInfoEl, `Streaming ${live.summary} to the room`);
    return;
  }
  const behind = livePlayer?.behindS() ?? null;
  const append = livePlayer?.appendMs() ?? null;
  liveVideoEl.dataset.behindMs = behind === null ? "" : String(Math.round(behind * 1000));
  if (append) {
    liveVideoEl.dataset.appendP50Ms = append.p50.toFixed(1);
    liveVideoEl.dataset.appendP95Ms = append.p95.toFixed(1);
  }
  if (liveVideoEl.dataset.problem) return;
  const latency = behind === null ? "starting…" : `${behind.toFixed(1)} s behind the live edge`;
  setText(liveInfoEl, `${live.summary || "Live"} · ${latency}`);
}

goLiveEl.addEventListener("click", async () => {
  goLiveEl.disabled = true;
  try {
    if (last?.live?.hosting) {
      await api.stopLive();
    } else {
      const summary = await api.goLive();
      toast(`Live: ${summary}`, "info");
    }
  } catch (e) {
    toast(errorText(e), "error");
  } finally {
    goLiveEl.disabled = false;
  }
});

/** @param {RoomMember} m */
function memberRow(m) {
  const badges = [m.isHost ? "host" : null, m.isMe ? "you" : null].filter(Boolean).join(", ");
  const drift = m.driftMs === null || m.isHost ? "" : `${m.driftMs >= 0 ? "+" : ""}${Math.round(m.driftMs)} ms`;
  return h("li", { class: "room-member", dataset: { state: m.state ?? "unknown", me: String(m.isMe) } }, [
    h("span", { class: "room-member-name", text: badges ? `${m.name} (${badges})` : m.name }),
    h("span", { class: "room-member-state", text: m.state ?? "joining" }),
    h("span", { class: "room-member-progress", text: `${Math.round(m.progress * 100)} %` }),
    h("span", { class: "room-member-drift", text: drift }),
  ]);
}

/**
 * Opens a room for a file this app shares or one on the network, as its host.
 * @param {string} infoHash
 */
export async function createRoom(infoHash) {
  try {
    showRoom(await api.createRoom(infoHash));
  } catch (e) {
    toast(errorText(e), "error");
  }
}

joinForm.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const code = joinInput.value.trim();
  if (!code) {
    joinInput.focus();
    return;
  }
  try {
    showRoom(await api.joinRoom(code));
    joinInput.value = "";
  } catch (e) {
    toast(errorText(e), "error");
  }
});

leaveEl.addEventListener("click", async () => {
  hideRoom();
  try {
    await api.leaveRoom();
  } catch (e) {
    toast(errorText(e), "error");
  }
});

playEl.addEventListener("click", () => {
  const action = last?.hostWantsPlaying ? "pause" : "play";
  api.roomControl(action).catch((e) => toast(errorText(e), "error"));
});

goOnEl.addEventListener("click", () => {
  api.roomControl("goOn").catch((e) => toast(errorText(e), "error"));
});

seekEl.addEventListener("input", () => {
  dragging = true;
});
seekEl.addEventListener("change", () => {
  dragging = false;
  const duration = Number.isFinite(videoEl.duration) ? videoEl.duration * 1000 : 0;
  if (duration <= 0) return;
  const positionMs = (Number(seekEl.value) / 1000) * duration;
  api.roomControl("seek", positionMs).catch((e) => toast(errorText(e), "error"));
});

/** A reloaded page goes back into the room the app is in. */
export async function restoreRoom() {
  try {
    const room = await api.currentRoom();
    if (room) showRoom(room);
  } catch {
    // Not in a room.
  }
}
