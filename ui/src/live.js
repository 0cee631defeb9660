// @ts-check
// The live player (issue 12). The webview has no RTCPeerConnection, so the node receives the
// host's media tracks and serves them as fragmented MP4 on its loopback server; this module
// reads that response as it arrives and appends it to a Media Source Extensions buffer. It
// keeps the player at the live edge: when it falls more than LAG_S behind what is buffered,
// it jumps to EDGE_S before the end. Old media is removed so memory stays flat.

/** Behind the live edge by more than this (s), the player jumps forward. */
const LAG_S = 1.0;
/** Where a jump lands: this far (s) before the newest buffered media. */
const EDGE_S = 0.3;
/** Media older than this (s) behind the player is removed from the buffer. */
const KEEP_S = 20;

/**
 * @typedef {object} LivePlayer
 * @property {() => void} stop ends the stream and empties the player
 * @property {() => number | null} behindS seconds between the player and the live edge
 * @property {() => {p50: number, p95: number, count: number} | null} appendMs
 *   how long appends took, from a chunk's arrival to the buffer having it (ms)
 */

/**
 * Plays the fragmented MP4 at `url` in `video`, from its start (a keyframe) at the live edge.
 * `onProblem` hears what stops it, in words.
 * @param {HTMLVideoElement} video
 * @param {string} url
 * @param {(text: string) => void} onProblem
 * @returns {LivePlayer}
 */
export function playLive(video, url, onProblem) {
  const abort = new AbortController();
  const source = new MediaSource();
  const objectUrl = URL.createObjectURL(source);
  /** @type {number[]} */
  const appendTimes = [];
  let stopped = false;
  let edgeTimer = 0;
  video.src = objectUrl;

  /** @param {string} text */
  const problem = (text) => {
    if (!stopped) onProblem(text);
  };

  const keepAtEdge = () => {
    const b = video.buffered;
    if (b.length === 0) return;
    const end = b.end(b.length - 1);
    const start = b.start(b.length - 1);
    // Behind, or in a gap before the newest range (after a skip to a keyframe): jump.
    if (end - video.currentTime > LAG_S || video.currentTime < start) {
      video.currentTime = Math.max(start, end - EDGE_S);
    }
    if (video.paused && !stopped) void video.play().catch(() => {
      // Autoplay with sound refused: muted, it may start.
      video.muted = true;
      void video.play().catch(() => {});
    });
  };

  /** @param {SourceBuffer} buffer */
  const trim = (buffer) => {
    const b = video.buffered;
    if (b.length === 0 || buffer.updating) return;
    const until = video.currentTime - KEEP_S;
    if (b.start(0) < until) buffer.remove(0, until);
  };

  const run = async () => {
    await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
    const response = await fetch(url, { signal: abort.signal });
    if (!response.ok || !response.body) {
      throw new Error(`the node answered ${response.status}: ${await response.text()}`);
    }
    const mime = response.headers.get("content-type") ?? "";
    if (!MediaSource.isTypeSupported(mime)) {
      throw new Error(`this player cannot play ${mime}`);
    }
    const buffer = source.addSourceBuffer(mime);
    /** @type {{bytes: Uint8Array, at: number}[]} */
    const queue = [];
    let pendingSince = 0;
    const pump = () => {
      if (buffer.updating || queue.length === 0 || stopped) return;
      const size = queue.reduce((n, c) => n + c.bytes.length, 0);
      const joined = new Uint8Array(size);
      let at = 0;
      pendingSince = queue[0].at;
      for (const c of queue) {
        joined.set(c.bytes, at);
        at += c.bytes.length;
      }
      queue.length = 0;
      buffer.appendBuffer(joined);
    };
    buffer.addEventListener("updateend", () => {
      if (pendingSince) {
        appendTimes.push(performance.now() - pendingSince);
        if (appendTimes.length > 2000) appendTimes.splice(0, 1000);
        pendingSince = 0;
      }
      trim(buffer);
      pump();
    });
    buffer.addEventListener("error", () => problem("The player refused the live stream's media"));
    edgeTimer = window.setInterval(keepAtEdge, 250);
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      queue.push({ bytes: value, at: performance.now() });
      pump();
    }
    problem("The live stream ended");
  };

  run().catch((e) => {
    if (!stopped && !(e instanceof DOMException && e.name === "AbortError")) {
      problem(`The live stream cannot play: ${e instanceof Error ? e.message : String(e)}`);
    }
  });

  return {
    stop() {
      stopped = true;
      window.clearInterval(edgeTimer);
      abort.abort();
      video.pause();
      video.removeAttribute("src");
      video.load();
      URL.revokeObjectURL(objectUrl);
    },
    behindS() {
      const b = video.buffered;
      if (b.length === 0) return null;
      return Math.max(0, b.end(b.length - 1) - video.currentTime);
    },
    appendMs() {
      if (appendTimes.length === 0) return null;
      const sorted = [...appendTimes].sort((a, b) => a - b);
      const at = (/** @type {number} */ p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
      return { p50: at(0.5), p95: at(0.95), count: sorted.length };
    },
  };
}
