// @ts-check
// Small DOM helpers: element creation without innerHTML (all text goes through textContent),
// lookups that fail loudly, and a copy-to-clipboard button.

import { icon } from "./icons.js";
import { toast } from "./toast.js";

/**
 * @typedef {string | number | boolean | null | undefined | ((ev: Event) => void) | Record<string, string>} AttrValue
 * Attributes: `class`, `text` (textContent), `dataset` (object), `on<event>` (listener),
 * booleans (present when true), anything else via setAttribute.
 */

/**
 * Creates an element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, AttrValue>} [attrs]
 * @param {Array<Node | string | null | undefined | false>} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, children = []) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") {
      el.textContent = String(value);
    } else if (key === "dataset" && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = v;
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

/**
 * The element with this id, of the expected type; throws if the page lacks it (a bug).
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new (...args: any[]) => T} type
 * @returns {T}
 */
export function byId(id, type) {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`index.html lacks #${id} (${type.name})`);
  return el;
}

/**
 * Copies text to the clipboard and says so.
 * @param {string} text
 * @param {string} what  what was copied, for the notice ("Address", "Info hash")
 * @returns {Promise<boolean>}
 */
export async function copyText(text, what) {
  try {
    await navigator.clipboard.writeText(text);
    toast(`${what} copied`, "success");
    return true;
  } catch (e) {
    toast(`Could not copy to the clipboard: ${e instanceof Error ? e.message : String(e)}`, "error");
    return false;
  }
}

/**
 * An icon button that copies `text`; its icon turns into a tick for a moment.
 * @param {() => string} getText  read at click time, so the button can outlive a re-render
 * @param {string} what
 * @param {string} [extraClass]
 * @returns {HTMLButtonElement}
 */
export function copyButton(getText, what, extraClass = "") {
  const button = h("button", {
    type: "button",
    class: `icon-button copy ${extraClass}`.trim(),
    title: `Copy ${what.toLowerCase()}`,
    "aria-label": `Copy ${what.toLowerCase()}`,
  }, [icon("copy")]);
  /** @type {number | undefined} */
  let timer;
  button.addEventListener("click", async () => {
    if (await copyText(getText(), what)) {
      button.replaceChildren(icon("check"));
      button.classList.add("copied");
      window.clearTimeout(timer);
      timer = window.setTimeout(() => {
        button.replaceChildren(icon("copy"));
        button.classList.remove("copied");
      }, 1500);
    }
  });
  return button;
}

/**
 * Sets text only when it changed (keeps selection and avoids needless layout).
 * @param {Element} el
 * @param {string} text
 */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Runs `fn` once calls have stopped for `ms` milliseconds.
 * @template {unknown[]} A
 * @param {(...args: A) => void} fn
 * @param {number} ms
 * @returns {(...args: A) => void}
 */
export function debounce(fn, ms) {
  /** @type {number | undefined} */
  let timer;
  return (...args) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => fn(...args), ms);
  };
}
