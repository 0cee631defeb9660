// @ts-check
// The room view (issue 11): one room at a time, as its host or a member. The <video> has no
// native controls: ten times a second its state goes to `room_tick`, and what comes back
// (play, pause, seek, a playback rate) is done to it; that is how every member follows the
// host. The host has Play/Pause, a position slider and "Go on without waiting"; a member has
// none (the server refuses a member's playback message anyway). The member list shows each
// one's state, how much of the media it has, and its drift from the host.

import { api, errorText } from "./api.js";
import { byId, copyButton, h, setText } from "./dom.js";
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
    for (const action of answer.actions) apply(action);
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
  if (t.waitingFor) status = `Waiting for ${t.waitingFor}`;
  else if (t.hostPositionMs === null) status = "Setting the clock with the host…";
  else if (t.playing) status = `Playing at ${clock(position)}${drift}`;
  else status = `Paused at ${clock(position)}${drift}`;
  setText(statusEl, status);
  membersEl.replaceChildren(...t.members.map(memberRow));
}

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
