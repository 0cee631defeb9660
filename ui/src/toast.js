// @ts-check
// Friendly notices: short messages stacked in the bottom-right corner that go away by themselves.

import { icon } from "./icons.js";

const MAX_TOASTS = 4;

/**
 * Shows a notice.
 * @param {string} message  a sentence for people
 * @param {"info" | "success" | "error"} [kind]
 */
export function toast(message, kind = "info") {
  const host = document.getElementById("toasts");
  if (!host) return;
  const el = document.createElement("div");
  el.className = `toast toast-${kind}`;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  el.append(icon(kind === "error" ? "alert" : kind === "success" ? "check" : "broadcast"));
  const text = document.createElement("span");
  text.className = "toast-text";
  text.textContent = message;
  el.append(text);
  const close = document.createElement("button");
  close.type = "button";
  close.className = "icon-button toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.title = "Dismiss";
  close.append(icon("x"));
  el.append(close);

  const remove = () => {
    el.classList.add("leaving");
    window.setTimeout(() => el.remove(), 180);
  };
  close.addEventListener("click", remove);
  window.setTimeout(remove, kind === "error" ? 8000 : 4000);

  host.append(el);
  while (host.children.length > MAX_TOASTS) host.firstElementChild?.remove();
}
