// @ts-check
// Inline SVG icons (24×24, stroked with currentColor). No external assets, no icon font, no
// emoji: everything renders the same under any font set, Xvfb included.

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * Each icon is a list of shapes: [tag, attributes].
 * @type {Record<string, Array<[string, Record<string, string>]>>}
 */
const SHAPES = {
  video: [
    ["rect", { x: "2", y: "6", width: "14", height: "12", rx: "2.5" }],
    ["path", { d: "m16 10.5 5.2-3.1a.5.5 0 0 1 .8.4v8.4a.5.5 0 0 1-.8.4L16 13.5" }],
  ],
  audio: [
    ["path", { d: "M9 18V5.5l11-2v12.5" }],
    ["circle", { cx: "6.5", cy: "18", r: "2.5" }],
    ["circle", { cx: "17.5", cy: "16", r: "2.5" }],
  ],
  image: [
    ["rect", { x: "3", y: "3", width: "18", height: "18", rx: "2.5" }],
    ["circle", { cx: "9", cy: "9", r: "1.8" }],
    ["path", { d: "m21 15.5-4.6-4.6a1 1 0 0 0-1.4 0L5 21" }],
  ],
  other: [
    ["path", { d: "M14 2.5H6.5a2 2 0 0 0-2 2v15a2 2 0 0 0 2 2h11a2 2 0 0 0 2-2V8z" }],
    ["path", { d: "M14 2.5V8h5.5" }],
  ],
  copy: [
    ["rect", { x: "9", y: "9", width: "12", height: "12", rx: "2" }],
    ["path", { d: "M5 15H4.5A1.5 1.5 0 0 1 3 13.5v-9A1.5 1.5 0 0 1 4.5 3h9A1.5 1.5 0 0 1 15 4.5V5" }],
  ],
  check: [["path", { d: "M20 6 9 17l-5-5" }]],
  trash: [
    ["path", { d: "M3.5 6h17" }],
    ["path", { d: "M18.5 6v13.5a2 2 0 0 1-2 2h-9a2 2 0 0 1-2-2V6" }],
    ["path", { d: "M8.5 6V4.5a2 2 0 0 1 2-2h3a2 2 0 0 1 2 2V6" }],
  ],
  download: [
    ["path", { d: "M12 3.5v11.5" }],
    ["path", { d: "m7 10 5 5 5-5" }],
    ["path", { d: "M4.5 20.5h15" }],
  ],
  upload: [
    ["path", { d: "M12 15.5V4" }],
    ["path", { d: "m7 9 5-5 5 5" }],
    ["path", { d: "M4.5 20.5h15" }],
  ],
  plus: [["path", { d: "M12 5v14M5 12h14" }]],
  refresh: [
    ["path", { d: "M20.5 12a8.5 8.5 0 1 1-2.6-6.1L20.5 8.5" }],
    ["path", { d: "M20.5 3.5v5h-5" }],
  ],
  search: [
    ["circle", { cx: "11", cy: "11", r: "7" }],
    ["path", { d: "m20.5 20.5-4.2-4.2" }],
  ],
  play: [["path", { d: "M7.5 4.8v14.4a.8.8 0 0 0 1.2.7l11.4-7.2a.8.8 0 0 0 0-1.4L8.7 4.1a.8.8 0 0 0-1.2.7z" }]],
  eye: [
    ["path", { d: "M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7S2 12 2 12z" }],
    ["circle", { cx: "12", cy: "12", r: "3" }],
  ],
  folder: [["path", { d: "M3 7.5a2 2 0 0 1 2-2h4.2l2 2.2H19a2 2 0 0 1 2 2v8.8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z" }]],
  external: [
    ["path", { d: "M14.5 3.5h6v6" }],
    ["path", { d: "M10 14 20.5 3.5" }],
    ["path", { d: "M18.5 13.5v5a2 2 0 0 1-2 2h-11a2 2 0 0 1-2-2v-11a2 2 0 0 1 2-2h5" }],
  ],
  x: [["path", { d: "M18 6 6 18M6 6l12 12" }]],
  users: [
    ["circle", { cx: "9", cy: "8", r: "3.5" }],
    ["path", { d: "M2.5 20.5v-.8a5.2 5.2 0 0 1 5.2-5.2h2.6a5.2 5.2 0 0 1 5.2 5.2v.8" }],
    ["path", { d: "M16 4.6a3.5 3.5 0 0 1 0 6.8" }],
    ["path", { d: "M21.5 20.5v-.8a5.2 5.2 0 0 0-3.3-4.8" }],
  ],
  sliders: [
    ["path", { d: "M4 6.5h9M19 6.5h1M4 12h3M11 12h9M4 17.5h11M19 17.5h1" }],
    ["circle", { cx: "16", cy: "6.5", r: "2.3" }],
    ["circle", { cx: "9", cy: "12", r: "2.3" }],
    ["circle", { cx: "17", cy: "17.5", r: "2.3" }],
  ],
  terminal: [
    ["rect", { x: "2.5", y: "4", width: "19", height: "16", rx: "2.5" }],
    ["path", { d: "m7 9.5 3 2.5-3 2.5M12.5 15h4.5" }],
  ],
  grid: [
    ["rect", { x: "3.5", y: "3.5", width: "7", height: "7", rx: "1.5" }],
    ["rect", { x: "13.5", y: "3.5", width: "7", height: "7", rx: "1.5" }],
    ["rect", { x: "3.5", y: "13.5", width: "7", height: "7", rx: "1.5" }],
    ["rect", { x: "13.5", y: "13.5", width: "7", height: "7", rx: "1.5" }],
  ],
  alert: [
    ["circle", { cx: "12", cy: "12", r: "9" }],
    ["path", { d: "M12 7.5v5.5M12 16.5v.01" }],
  ],
  broadcast: [
    ["circle", { cx: "12", cy: "12", r: "2" }],
    ["path", { d: "M16.2 7.8a6 6 0 0 1 0 8.4M7.8 16.2a6 6 0 0 1 0-8.4" }],
    ["path", { d: "M19.1 4.9a10 10 0 0 1 0 14.2M4.9 19.1a10 10 0 0 1 0-14.2" }],
  ],
  inbox: [
    ["path", { d: "M3 13.5h5l1.5 2.5h5l1.5-2.5h5" }],
    ["path", { d: "M5.5 5.5h13L21 13.5v5a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-5z" }],
  ],
  network: [
    ["circle", { cx: "12", cy: "5", r: "2.5" }],
    ["circle", { cx: "5", cy: "18.5", r: "2.5" }],
    ["circle", { cx: "19", cy: "18.5", r: "2.5" }],
    ["path", { d: "m10.8 7.2-4.6 9M13.2 7.2l4.6 9M7.5 18.5h9" }],
  ],
  logo: [
    ["path", { d: "M2.5 12c2.6-3.6 6.4-5.4 10.2-5 2.4.2 4.2 1.4 5.3 2.6L21.5 7v10l-3.5-2.6c-1.1 1.2-2.9 2.4-5.3 2.6-3.8.4-7.6-1.4-10.2-5z" }],
    ["circle", { cx: "8", cy: "11.2", r: ".6", fill: "currentColor" }],
  ],
};

/**
 * An inline SVG icon, hidden from screen readers (buttons carry their own label).
 * @param {keyof typeof SHAPES} name
 * @param {string} [className]
 * @returns {SVGSVGElement}
 */
export function icon(name, className) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("fill", name === "play" ? "currentColor" : "none");
  svg.setAttribute("stroke", "currentColor");
  svg.setAttribute("stroke-width", "1.8");
  svg.setAttribute("stroke-linecap", "round");
  svg.setAttribute("stroke-linejoin", "round");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", className ? `icon ${className}` : "icon");
  for (const [tag, attrs] of SHAPES[name]) {
    const shape = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) shape.setAttribute(key, value);
    svg.appendChild(shape);
  }
  return svg;
}

/** @typedef {keyof typeof SHAPES} IconName */

/**
 * Replaces every `<span data-icon="name">` placeholder in the static HTML with its SVG.
 * @param {ParentNode} root
 */
export function fillIconPlaceholders(root) {
  for (const el of root.querySelectorAll("[data-icon]")) {
    const name = el.getAttribute("data-icon");
    if (name && name in SHAPES) {
      el.replaceWith(icon(/** @type {IconName} */ (name), el.getAttribute("class") ?? undefined));
    }
  }
}
