// @ts-check
// In-app viewer: a modal with <video>, <audio> or <img> whose src is the loopback URL that
// `media_url` or `watch` hands out (WebKitGTK cannot stream video from a custom scheme).
// Watching a download plays it while it arrives: under the player a piece map shows what is
// here, on its way and missing, and a line says "Buffering" while the player waits for
// pieces (issue 10, item 4).

import { api, errorText } from "./api.js";
import { byId, h, setText } from "./dom.js";
import { humanRate, percent } from "./format.js";
import { icon } from "./icons.js";
import { transferById } from "./transfers.js";

const viewerEl = byId("viewer", HTMLElement);
const titleEl = byId("viewer-title", HTMLElement);
const iconEl = byId("viewer-icon", HTMLElement);
const bodyEl = byId("viewer-body", HTMLElement);
const closeEl = byId("viewer-close", HTMLButtonElement);
const backdropEl = byId("viewer-backdrop", HTMLElement);

/** Focus goes back here when the viewer closes. @type {HTMLElement | null} */
let returnFocus = null;
/** Bumped on every open/close so a late media_url answer cannot fill a newer viewer. */
let generation = 0;

closeEl.addEventListener("click", closeViewer);
backdropEl.addEventListener("click", closeViewer);
document.addEventListener("keydown", (ev) => {
  if (viewerEl.hidden) return;
  if (ev.key === "Escape") {
    ev.preventDefault();
    closeViewer();
  } else if (ev.key === "Tab") {
    trapFocus(ev);
  }
});

/** @returns {boolean} */
export function isViewerOpen() {
  return !viewerEl.hidden;
}

/**
 * Shows the viewer with a spinner; answers the generation that owns it.
 * @param {{ name: string; category: Category }} file
 * @returns {number}
 */
function openShell(file) {
  const mine = ++generation;
  returnFocus = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  titleEl.textContent = file.name;
  titleEl.title = file.name;
  iconEl.className = `viewer-icon cat-icon cat-${file.category}`;
  iconEl.replaceChildren(icon(file.category));
  bodyEl.className = `viewer-body viewer-${file.category}`;
  bodyEl.replaceChildren(h("div", { class: "viewer-message" }, [h("span", { class: "spinner", "aria-hidden": "true" }), "Loading…"]));
  viewerEl.classList.remove("streaming");
  viewerEl.hidden = false;
  setBackgroundInert(true);
  closeEl.focus();
  return mine;
}

/**
 * Opens the viewer on a local file.
 * @param {{ name: string; path: string; category: Category }} file
 */
export async function openViewer(file) {
  const mine = openShell(file);
  const opener = () => openButton(file.path);
  /** @type {string} */
  let url;
  try {
    url = await api.mediaUrl(file.path);
  } catch (e) {
    if (mine === generation) showProblem(errorText(e), opener);
    return;
  }
  if (mine !== generation) return;
  showMedia(file, url, opener, { downloading: false });
}

/**
 * Watch: plays a network file, from its file when it is here, else while it downloads
 * (`watch` starts or joins the download).
 * @param {{ infoHash: string; name: string; category: Category }} file
 */
export async function watchFile(file) {
  const mine = openShell(file);
  const playerOpener = () => externalPlayerButton(file.infoHash);
  /** @type {Watch} */
  let watch;
  try {
    watch = await api.watch(file.infoHash);
  } catch (e) {
    if (mine === generation) showProblem(errorText(e), null);
    return;
  }
  if (mine !== generation) return;
  const path = watch.path;
  if (path !== null) {
    showMedia(file, watch.url, () => openButton(path), { downloading: false });
    return;
  }
  const stream = { downloading: true };
  const media = showMedia(file, watch.url, playerOpener, stream);
  if (media && watch.transfer !== null) showStream(media, watch.transfer, file.infoHash, mine, stream);
}

/**
 * Puts the player (or picture) for `url` in the viewer.
 * @param {{ name: string; category: Category }} file
 * @param {string} url
 * @param {() => HTMLElement} opener  the button that hands the file to another app
 * @param {{ downloading: boolean }} stream  whether the file is still downloading (kept
 *   up to date by `showStream`)
 * @returns {HTMLMediaElement | null}
 */
function showMedia(file, url, opener, stream) {
  if (file.category === "video") {
    const video = h("video", { id: "viewer-video", controls: true, autoplay: true, preload: "auto", playsinline: true });
    video.addEventListener("error", () => showProblem(mediaErrorText(video.error, "video"), opener));
    video.src = url;
    bodyEl.replaceChildren(video);
    watchProgress(video, opener, "video", stream);
    return video;
  }
  if (file.category === "audio") {
    const audio = h("audio", { id: "viewer-audio", controls: true, autoplay: true, preload: "auto" });
    audio.addEventListener("error", () => showProblem(mediaErrorText(audio.error, "song"), opener));
    audio.src = url;
    bodyEl.replaceChildren(h("div", { class: "audio-stage" }, [
      h("span", { class: "audio-art cat-icon cat-audio" }, [icon("audio")]),
      h("p", { class: "audio-name", text: file.name }),
      audio,
    ]));
    watchProgress(audio, opener, "song", stream);
    return audio;
  }
  const img = h("img", { id: "viewer-image", alt: file.name, decoding: "async" });
  img.addEventListener("error", () => showProblem("This picture could not be shown here. Open it in another app instead.", opener));
  img.src = url;
  bodyEl.replaceChildren(img);
  return null;
}

/**
 * Keeps the player short enough for the bars under it (piece map, notices) to show: the
 * video paints over anything that overflows onto it.
 */
function fitBars() {
  let height = 0;
  for (const bar of viewerEl.querySelectorAll(".viewer-stream, .viewer-notice")) {
    if (bar instanceof HTMLElement) height += bar.offsetHeight;
  }
  viewerEl.style.setProperty("--viewer-bars", `${height}px`);
}

/** How often the piece map is asked for while a download plays, in ms. */
const PIECE_MAP_MS = 500;

/**
 * Under the player of a download: the piece map (here, on its way, missing, and where the
 * player is), whether the player waits for pieces, and the download's progress.
 * @param {HTMLMediaElement} media
 * @param {number} transfer
 * @param {string} infoHash
 * @param {number} mine  the viewer's generation
 * @param {{ downloading: boolean }} stream  set to false once every piece is here
 */
function showStream(media, transfer, infoHash, mine, stream) {
  const canvas = h("canvas", { class: "piece-canvas", "aria-hidden": "true" });
  const map = h("div", { id: "viewer-pieces", class: "piece-map", role: "img", "aria-label": "Pieces: none here yet" }, [canvas]);
  const state = h("span", { id: "viewer-stream-state", class: "stream-state", role: "status", dataset: { state: "loading" } }, [
    h("span", { class: "stream-dot", "aria-hidden": "true" }),
    h("span", { class: "stream-state-text", text: "Loading" }),
  ]);
  const progress = h("span", { id: "viewer-stream-progress", class: "stream-progress" });
  const legend = h("span", { class: "piece-legend", "aria-hidden": "true" }, [
    h("span", { class: "key key-have" }), "here",
    h("span", { class: "key key-flight" }), "on its way",
    h("span", { class: "key key-missing" }), "missing",
  ]);
  const bar = h("div", { id: "viewer-stream", class: "viewer-stream" }, [
    map,
    h("div", { class: "stream-line" }, [state, progress, legend, externalPlayerButton(infoHash)]),
  ]);
  viewerEl.classList.add("streaming");
  bodyEl.after(bar);
  fitBars();

  /** @type {PieceMap | null} */
  let last = null;
  /** The player asked for data it does not have (a `waiting` event) and has not played since. */
  let waiting = false;
  let lastTime = media.currentTime;
  const setState = () => {
    const short = media.seeking || waiting;
    /** @type {[string, string]} */
    const [key, text] = media.error ? ["error", "Stopped"]
      // Short of data while pieces are missing: the download is behind the player.
      : short && stream.downloading ? ["buffering", media.seeking
        ? "Buffering: fetching the pieces at the new position first"
        : "Buffering: waiting for the next pieces"]
      : short ? ["loading", "Loading"]
      : media.ended ? ["ended", "Ended"]
      : media.paused ? ["paused", media.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA ? "Paused" : "Loading"]
      : ["playing", "Playing"];
    if (state.dataset.state !== key) {
      state.dataset.state = key;
      setText(/** @type {HTMLElement} */ (state.querySelector(".stream-state-text")), text);
    }
  };
  media.addEventListener("waiting", () => { waiting = true; setState(); });
  media.addEventListener("playing", () => { waiting = false; setState(); });
  media.addEventListener("timeupdate", () => {
    // Time moving is playing, whatever events came before.
    if (!media.seeking && media.currentTime !== lastTime) waiting = false;
    lastTime = media.currentTime;
    setState();
    draw(canvas, last, media);
  });
  for (const ev of ["pause", "seeking", "seeked", "ended", "canplay", "loadedmetadata"]) {
    media.addEventListener(ev, () => { setState(); draw(canvas, last, media); });
  }

  const poll = async () => {
    if (mine !== generation || !media.isConnected) return;
    try {
      const pieces = await api.pieceMap(transfer);
      if (mine !== generation) return;
      last = pieces;
      const here = pieces.have.reduce((n, [a, b]) => n + (b - a), 0);
      const flight = pieces.inFlight.reduce((n, [a, b]) => n + (b - a), 0);
      map.dataset.lenBytes = String(pieces.lenBytes);
      map.dataset.haveBytes = String(here);
      map.dataset.inFlightBytes = String(flight);
      map.setAttribute("aria-label", `Pieces: ${percent(here, pieces.lenBytes)} % here`);
      draw(canvas, pieces, media);
      const t = transferById(transfer);
      const done = pieces.lenBytes > 0 && here >= pieces.lenBytes;
      setText(progress, done ? "Downloaded: all pieces here"
        : `${percent(here, pieces.lenBytes)} % here` + (t && t.state === "running"
          ? ` · ${humanRate(t.rateBytesPerSec)} · ${t.peers.length} ${t.peers.length === 1 ? "peer" : "peers"}`
          : ""));
      if (done) {
        stream.downloading = false;
        setState();
        return;
      }
    } catch (e) {
      setText(progress, errorText(e));
    }
    window.setTimeout(() => void poll(), PIECE_MAP_MS);
  };
  void poll();
  setState();
}

/**
 * Paints the piece map: here, on its way, missing; and a line where the player is.
 * @param {HTMLCanvasElement} canvas
 * @param {PieceMap | null} pieces
 * @param {HTMLMediaElement} media
 */
function draw(canvas, pieces, media) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.fillStyle = "#343a45";
  ctx.fillRect(0, 0, width, height);
  if (!pieces || pieces.lenBytes <= 0) return;
  const x = (/** @type {number} */ byte) => (byte / pieces.lenBytes) * width;
  /** @param {[number, number][]} ranges @param {string} color */
  const paint = (ranges, color) => {
    ctx.fillStyle = color;
    for (const [a, b] of ranges) ctx.fillRect(x(a), 0, Math.max(1, x(b) - x(a)), height);
  };
  paint(pieces.have, "#2bb3a6");
  paint(pieces.inFlight, "#e6a23c");
  if (Number.isFinite(media.duration) && media.duration > 0) {
    const at = (media.currentTime / media.duration) * width;
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(Math.min(width - 2 * ratio, Math.max(0, at - ratio)), 0, 2 * ratio, height);
  }
}

export function closeViewer() {
  if (viewerEl.hidden) return;
  generation += 1;
  // Stop playback and drop the connection to the media server before removing the element.
  for (const media of bodyEl.querySelectorAll("video, audio")) {
    if (media instanceof HTMLMediaElement) {
      media.pause();
      media.removeAttribute("src");
      media.load();
    }
  }
  bodyEl.replaceChildren();
  for (const extra of viewerEl.querySelectorAll(".viewer-notice, .viewer-stream")) extra.remove();
  viewerEl.classList.remove("streaming");
  fitBars();
  viewerEl.hidden = true;
  setBackgroundInert(false);
  if (returnFocus && document.contains(returnFocus)) returnFocus.focus();
  returnFocus = null;
}

/**
 * @param {MediaError | null} error
 * @param {string} what
 * @returns {string}
 */
function mediaErrorText(error, what) {
  if (error && error.code === MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED) {
    return `This ${what} uses a format the built-in player does not support. Open it in another app instead.`;
  }
  if (error && error.code === MediaError.MEDIA_ERR_NETWORK) {
    return `The ${what} stopped loading. Close the viewer and try again.`;
  }
  return `This ${what} could not be played here. Open it in another app instead.`;
}

/** How long playback may stand still while it should be playing, in ms. */
const STALL_MS = 4000;
/** How long playback must move before a "not playing" notice goes, in ms. */
const NOTICE_CLEAR_MS = 2000;

/**
 * Some files load without an error and then stand still (WebKitGTK froze on the first frames
 * of an MPEG-1 program stream): when the time stops moving while the element plays, say so
 * under the player and offer another app. The notice goes when playback moves again. While a
 * download plays, a player short of data is buffering, not failing: no notice then.
 * Before the notice, one seek to where it stands, then one reload of the source at that
 * point: WebKitGTK's player sometimes stays frozen on the target frame of a seek made while
 * the file was downloading, with every byte there (seen in the watch WebDriver test under
 * load, 2 runs of 5); a seek restarts its pipeline most times, and CI once saw it stand
 * after that too, which a reload (a new pipeline) mends. A file that still stands after
 * both gets the notice.
 * @param {HTMLMediaElement} media
 * @param {() => HTMLElement} opener
 * @param {string} what
 * @param {{ downloading: boolean }} stream
 */
function watchProgress(media, opener, what, stream) {
  let last = -1;
  let since = performance.now();
  /** Since when the time has moved at every look; null while it stands. @type {number | null} */
  let movingSince = null;
  /** @type {HTMLElement | null} */
  let notice = null;
  /** When a seek last tried to restart a frozen player (ms); cleared once it plays on. @type {number | null} */
  let kickedAt = null;
  /** When a reload of the source last tried to restart it (ms); cleared once it plays on. @type {number | null} */
  let reloadedAt = null;
  const drop = () => {
    if (notice) {
      notice.remove();
      notice = null;
      fitBars();
    }
  };
  const timer = window.setInterval(() => {
    if (!media.isConnected) {
      window.clearInterval(timer);
      drop();
      return;
    }
    const now = performance.now();
    const moved = media.currentTime !== last;
    last = media.currentTime;
    const buffering = stream.downloading && media.readyState < HTMLMediaElement.HAVE_FUTURE_DATA;
    // A restarting seek that never ends is a frozen player too.
    const tried = reloadedAt ?? kickedAt;
    const stuckSeeking = media.seeking && tried !== null && now - tried > STALL_MS;
    if (!stuckSeeking && (media.paused || media.ended || media.seeking || buffering)) {
      since = now;
      movingSince = null;
      return;
    }
    if (moved) {
      since = now;
      movingSince ??= now;
      // A player that jerks on now and then is not playing: the notice stays until the time
      // has moved for a while.
      if (now - movingSince >= NOTICE_CLEAR_MS) {
        drop();
        kickedAt = null;
        reloadedAt = null;
      }
      return;
    }
    movingSince = null;
    if (!notice && now - since > STALL_MS && kickedAt === null) {
      kickedAt = now;
      since = now;
      console.warn(`player stood still at ${media.currentTime} s; seeking there to restart it`);
      media.currentTime = media.currentTime;
      return;
    }
    if (!notice && now - since > STALL_MS && reloadedAt === null) {
      reloadedAt = now;
      since = now;
      const at = media.currentTime;
      console.warn(`player still stood at ${at} s; loading it again there`);
      media.addEventListener("loadedmetadata", () => {
        media.currentTime = at;
        media.play().catch(() => {});
      }, { once: true });
      media.load();
      return;
    }
    if (!notice && now - since > STALL_MS) {
      notice = h("div", { class: "viewer-notice", role: "alert" }, [
        icon("alert"),
        h("span", { text: `This ${what} is not playing: the built-in player may not decode its format. Open it in another app instead.` }),
        opener(),
      ]);
      // Under the player, not over it: the video layer paints over anything on top.
      bodyEl.after(notice);
      fitBars();
    }
  }, 500);
}

/**
 * "Open in default app", with its failure said beside it.
 * @param {string} path
 * @param {string} [buttonClass]
 * @returns {HTMLElement}
 */
function openButton(path, buttonClass = "button small") {
  return commandButton("open-default", "Open in default app", () => api.openFile(path), buttonClass);
}

/**
 * "Open in external player": the system's player for the file's type plays the stream URL
 * (or the file once it is here), with its failure said beside it.
 * @param {string} infoHash
 * @param {string} [buttonClass]
 * @returns {HTMLElement}
 */
function externalPlayerButton(infoHash, buttonClass = "button small") {
  return commandButton("open-player", "Open in external player", () => api.openInPlayer(infoHash), buttonClass);
}

/**
 * A button that runs `run`, with its failure said beside it.
 * @param {string} cls
 * @param {string} label
 * @param {() => Promise<unknown>} run
 * @param {string} buttonClass
 * @returns {HTMLElement}
 */
function commandButton(cls, label, run, buttonClass) {
  const status = h("span", { class: "viewer-status", role: "status" });
  return h("span", { class: "viewer-open" }, [
    h("button", {
      type: "button",
      class: `${buttonClass} ${cls}`,
      onclick: async () => {
        status.textContent = "";
        try {
          await run();
        } catch (e) {
          status.textContent = errorText(e);
        }
      },
    }, [icon("external"), label]),
    status,
  ]);
}

/**
 * Replaces the media with a sentence and, when given, a button to another app.
 * @param {string} message
 * @param {(() => HTMLElement) | null} opener
 */
function showProblem(message, opener) {
  bodyEl.replaceChildren(h("div", { class: "viewer-message problem" }, [
    icon("alert", "big"),
    h("p", { text: message }),
    opener ? opener() : null,
  ]));
}

/**
 * Makes everything behind the dialog unreachable by mouse, keyboard and screen readers.
 * @param {boolean} on
 */
function setBackgroundInert(on) {
  for (const el of document.querySelectorAll("body > header, body > main")) {
    if (el instanceof HTMLElement) el.inert = on;
  }
}

/**
 * Keeps Tab inside the dialog.
 * @param {KeyboardEvent} ev
 */
function trapFocus(ev) {
  const focusable = /** @type {HTMLElement[]} */ ([...viewerEl.querySelectorAll("button, [href], video, audio, [tabindex]:not([tabindex='-1'])")])
    .filter((el) => !el.hasAttribute("disabled"));
  if (!focusable.length) return;
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  if (ev.shiftKey && document.activeElement === first) {
    ev.preventDefault();
    last.focus();
  } else if (!ev.shiftKey && document.activeElement === last) {
    ev.preventDefault();
    first.focus();
  }
}
