// @ts-check
// Numbers for people: sizes, speeds, durations, clock times.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/**
 * "512 B", "1.5 KiB", "12.4 MiB", "1.02 GiB" (binary units, three significant digits).
 * @param {number} bytes
 * @returns {string}
 */
export function humanSize(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return "—";
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/**
 * "3.2 MiB/s" (MiB/s always, so speeds compare at a glance).
 * @param {number} bytesPerSec
 * @returns {string}
 */
export function humanRate(bytesPerSec) {
  if (!Number.isFinite(bytesPerSec) || bytesPerSec <= 0) return "0 MiB/s";
  const mib = bytesPerSec / (1024 * 1024);
  const digits = mib >= 100 ? 0 : mib >= 10 ? 1 : 2;
  return `${mib.toFixed(digits)} MiB/s`;
}

/**
 * "45 s", "1 min 20 s", "2 h 5 min".
 * @param {number} secs
 * @returns {string}
 */
export function humanDuration(secs) {
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const rest = s % 60;
    return rest ? `${Math.floor(s / 60)} min ${rest} s` : `${s / 60} min`;
  }
  const hours = Math.floor(s / 3600);
  const mins = Math.floor((s % 3600) / 60);
  return mins ? `${hours} h ${mins} min` : `${hours} h`;
}

/**
 * Local wall-clock time "HH:MM:SS".
 * @param {number} timeMs  milliseconds since the Unix epoch
 * @returns {string}
 */
export function clockTime(timeMs) {
  const d = new Date(timeMs);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Percent done, 0–100, rounded down so 100 % means finished.
 * @param {number} done
 * @param {number} total
 * @returns {number}
 */
export function percent(done, total) {
  if (!(total > 0)) return done > 0 ? 100 : 0;
  return Math.min(100, Math.max(0, Math.floor((done / total) * 100)));
}

/**
 * "a1b2c3d4…e5f6" for long hashes and ids.
 * @param {string} hash
 * @param {number} [head]
 * @param {number} [tail]
 * @returns {string}
 */
export function shortHash(hash, head = 8, tail = 4) {
  return hash.length <= head + tail + 1 ? hash : `${hash.slice(0, head)}…${hash.slice(-tail)}`;
}

/** @type {Record<Category, string>} */
export const CATEGORY_LABEL = { video: "Video", audio: "Audio", image: "Image", other: "Other" };

/**
 * How a link to a peer is made, in words.
 * @param {CandidateType} type
 * @returns {string}
 */
export function reachText(type) {
  switch (type) {
    case "host":
      return "direct";
    case "srflx":
    case "prflx":
      return "via STUN";
    case "relay":
      return "via TURN relay";
    default:
      return "route unknown";
  }
}

/**
 * Which in-app viewer action a category has, if any.
 * @param {Category} category
 * @returns {"Play" | "View" | null}
 */
export function viewVerb(category) {
  if (category === "video" || category === "audio") return "Play";
  if (category === "image") return "View";
  return null;
}
