// @ts-check
// In-app viewer: a modal with <video>, <audio> or <img> whose src is the loopback URL that
// `media_url` hands out (WebKitGTK cannot stream video from a custom scheme).

import { api, errorText } from "./api.js";
import { byId, h } from "./dom.js";
import { icon } from "./icons.js";

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
 * Opens the viewer on a local file.
 * @param {{ name: string; path: string; category: Category }} file
 */
export async function openViewer(file) {
  const mine = ++generation;
  returnFocus = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  titleEl.textContent = file.name;
  titleEl.title = file.name;
  iconEl.className = `viewer-icon cat-icon cat-${file.category}`;
  iconEl.replaceChildren(icon(file.category));
  bodyEl.className = `viewer-body viewer-${file.category}`;
  bodyEl.replaceChildren(h("div", { class: "viewer-message" }, [h("span", { class: "spinner", "aria-hidden": "true" }), "Loading…"]));
  viewerEl.hidden = false;
  setBackgroundInert(true);
  closeEl.focus();

  /** @type {string} */
  let url;
  try {
    url = await api.mediaUrl(file.path);
  } catch (e) {
    if (mine === generation) showProblem(errorText(e), file.path);
    return;
  }
  if (mine !== generation) return;

  if (file.category === "video") {
    const video = h("video", { id: "viewer-video", controls: true, autoplay: true, preload: "auto", playsinline: true });
    video.addEventListener("error", () => showProblem(mediaErrorText(video.error, "video"), file.path));
    video.src = url;
    bodyEl.replaceChildren(video);
    watchProgress(video, file.path, "video");
  } else if (file.category === "audio") {
    const audio = h("audio", { id: "viewer-audio", controls: true, autoplay: true, preload: "auto" });
    audio.addEventListener("error", () => showProblem(mediaErrorText(audio.error, "song"), file.path));
    audio.src = url;
    bodyEl.replaceChildren(h("div", { class: "audio-stage" }, [
      h("span", { class: "audio-art cat-icon cat-audio" }, [icon("audio")]),
      h("p", { class: "audio-name", text: file.name }),
      audio,
    ]));
    watchProgress(audio, file.path, "song");
  } else {
    const img = h("img", { id: "viewer-image", alt: file.name, decoding: "async" });
    img.addEventListener("error", () => showProblem("This picture could not be shown here. Open it in another app instead.", file.path));
    img.src = url;
    bodyEl.replaceChildren(img);
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
  for (const notice of viewerEl.querySelectorAll(".viewer-notice")) notice.remove();
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

/**
 * Some files load without an error and then stand still (WebKitGTK froze on the first frames
 * of an MPEG-1 program stream): when the time stops moving while the element plays, say so
 * under the player and offer the default app. The notice goes when playback moves again.
 * @param {HTMLMediaElement} media
 * @param {string} path
 * @param {string} what
 */
function watchProgress(media, path, what) {
  let last = -1;
  let since = performance.now();
  /** @type {HTMLElement | null} */
  let notice = null;
  const timer = window.setInterval(() => {
    if (!media.isConnected) {
      window.clearInterval(timer);
      notice?.remove();
      return;
    }
    const now = performance.now();
    if (media.paused || media.ended || media.seeking || media.currentTime !== last) {
      last = media.currentTime;
      since = now;
      notice?.remove();
      notice = null;
      return;
    }
    if (!notice && now - since > STALL_MS) {
      notice = h("div", { class: "viewer-notice", role: "alert" }, [
        icon("alert"),
        h("span", { text: `This ${what} is not playing: the built-in player may not decode its format. Open it in another app instead.` }),
        openButton(path),
      ]);
      // Under the player, not over it: the video layer paints over anything on top.
      bodyEl.after(notice);
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
  const status = h("span", { class: "viewer-status" });
  return h("span", { class: "viewer-open" }, [
    h("button", {
      type: "button",
      class: buttonClass,
      onclick: async () => {
        try {
          await api.openFile(path);
        } catch (e) {
          status.textContent = errorText(e);
        }
      },
    }, [icon("external"), "Open in default app"]),
    status,
  ]);
}

/**
 * Replaces the media with a sentence and an Open button.
 * @param {string} message
 * @param {string} path
 */
function showProblem(message, path) {
  bodyEl.replaceChildren(h("div", { class: "viewer-message problem" }, [
    icon("alert", "big"),
    h("p", { text: message }),
    openButton(path, "button"),
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
