// Shared widgets: notices, confirmations, buttons that are disabled while their request is in
// flight, status badges, autocompletion from /api/v1/complete.

import { api, ApiError, q } from "./api";
import { debounce, h, mount } from "./dom";

let toastBox: HTMLElement | null = null;

export function toast(text: string, kind: "ok" | "error" | "info" = "info"): void {
  if (!toastBox) {
    toastBox = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.appendChild(toastBox);
  }
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, text,
    h("button", { class: "link", "aria-label": "dismiss", onclick: () => el.remove() }, "×"));
  toastBox.appendChild(el);
  setTimeout(() => el.remove(), kind === "error" ? 12000 : 5000);
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

// Runs `fn` with `btn` disabled (and marked busy) until it settles; errors become a notice
// (and are shown in `box` when given). Returns fn's value, or undefined on error.
export async function busy<T>(btn: HTMLButtonElement | null, fn: () => Promise<T>, box?: HTMLElement): Promise<T | undefined> {
  if (btn?.disabled) return undefined;
  const label = btn?.textContent ?? "";
  if (btn) {
    btn.disabled = true;
    btn.setAttribute("aria-busy", "true");
  }
  if (box) mount(box);
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiError && e.handled) return undefined;  // on its way to the login page
    const msg = errorText(e);
    if (box) mount(box, h("div", { class: "error-box", role: "alert" }, msg));
    else toast(msg, "error");
    return undefined;
  } finally {
    if (btn) {
      btn.disabled = false;
      btn.removeAttribute("aria-busy");
      btn.textContent = label;
    }
  }
}

// Shows `form` (method "dialog") in a modal <dialog>; Escape or `cancel` closes it; `closed`
// runs once it is gone.
function showModal(form: HTMLFormElement, cancel: HTMLButtonElement, focus: HTMLElement, closed: () => void): void {
  const dlg = h("dialog", { class: "confirm" }, form);
  cancel.addEventListener("click", () => dlg.close());
  dlg.addEventListener("close", () => {
    dlg.remove();
    closed();
  });
  document.body.appendChild(dlg);
  dlg.showModal();
  focus.focus();
}

// A modal confirmation (<dialog>): resolves true on confirm. `typed`: the user must type that
// text first (destructive actions on many objects).
export function confirmDialog(opts: { title: string; body: (string | Node)[]; confirm: string; danger?: boolean; typed?: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const input = opts.typed ? h("input", { type: "text", "aria-label": `type ${opts.typed} to confirm`, autocomplete: "off" }) : null;
    const ok = h("button", { class: opts.danger ? "danger" : "primary", type: "submit", "data-test": "confirm" }, opts.confirm);
    const cancel = h("button", { type: "button" }, "Cancel");
    if (input) {
      ok.disabled = true;
      input.addEventListener("input", () => (ok.disabled = input.value.trim() !== opts.typed));
    }
    const form = h("form", { method: "dialog" },
      h("h2", null, opts.title),
      ...opts.body.map((b) => (typeof b === "string" ? h("p", null, b) : b)),
      input ? h("label", null, `Type "${opts.typed}" to confirm: `, input) : null,
      h("div", { class: "buttons" }, cancel, ok));
    let result = false;
    ok.addEventListener("click", () => (result = true));
    showModal(form, cancel, input ?? cancel, () => resolve(result));
  });
}

export function badge(status: string): HTMLElement {
  const known = ["ok", "error", "unknown", "disabled", "maintenance", "active", "draining", "dead"];
  const cls = known.includes(status) ? status : "unknown";
  return h("span", { class: `badge ${cls}`, "data-status": status }, status || "unknown");
}

let listCounter = 0;
// Attaches a <datalist> filled from /api/v1/complete?field=&prefix= as the user types.
export function complete(input: HTMLInputElement, field: "host" | "group" | "plugin"): HTMLDataListElement {
  const id = `complete-${field}-${++listCounter}`;
  const list = h("datalist", { id });
  input.setAttribute("list", id);
  input.setAttribute("autocomplete", "off");
  let last = "\u0000";
  const fetchSuggestions = debounce(async () => {
    const prefix = input.value;
    if (prefix === last) return;
    last = prefix;
    try {
      const r = await api<{ suggestions?: string[]; values?: string[] } | string[]>("GET", `/api/v1/complete${q({ field, prefix })}`);
      const values = Array.isArray(r) ? r : r.suggestions ?? r.values ?? [];
      if (input.value !== prefix) return;
      mount(list, ...values.slice(0, 20).map((v) => h("option", { value: String(v) })));
    } catch {
      // completion is a convenience; the filter itself still works
    }
  }, 150);
  input.addEventListener("input", fetchSuggestions);
  input.addEventListener("focus", fetchSuggestions);
  return list;
}

export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  return h("label", { class: "field" }, h("span", null, label), control, hint ? h("small", null, hint) : null);
}

export function pageHeader(title: string, ...extra: (Node | null)[]): HTMLElement {
  return h("header", { class: "page-header" }, h("h1", null, title), h("div", { class: "actions" }, ...extra));
}

// A modal form: resolves with the controls' values on submit, null on cancel.
export function formDialog(opts: { title: string; body?: (string | Node)[]; controls: [string, HTMLInputElement | HTMLSelectElement][]; confirm: string; danger?: boolean }): Promise<Record<string, string> | null> {
  return new Promise((resolve) => {
    const ok = h("button", { class: opts.danger ? "danger" : "primary", type: "submit", "data-test": "confirm" }, opts.confirm);
    const cancel = h("button", { type: "button" }, "Cancel");
    const form = h("form", { method: "dialog" },
      h("h2", null, opts.title),
      ...(opts.body ?? []).map((b) => (typeof b === "string" ? h("p", null, b) : b)),
      ...opts.controls.map(([label, c]) => field(label, c)),
      h("div", { class: "buttons" }, cancel, ok));
    let result: Record<string, string> | null = null;
    form.addEventListener("submit", () => {
      result = {};
      for (const [label, c] of opts.controls) result[c.name || label] = c.value;
    });
    showModal(form, cancel, opts.controls[0]?.[1] ?? ok, () => resolve(result));
  });
}

export function servicesCell(services: { plugin: string; state?: string; enabled?: boolean }[] | number | undefined, enabledCount?: number): HTMLElement {
  if (services === undefined) return h("span");
  if (typeof services === "number") {
    return h("span", { class: "muted" }, `${enabledCount ?? 0}/${services} enabled`);
  }
  return h("span", { class: "chips" }, ...services.map((s) =>
    h("span", { class: `chip ${s.enabled === false ? "off" : s.state ?? "unknown"}`, title: `${s.plugin}: ${s.enabled === false ? "not monitored" : s.state ?? "unknown"}` }, s.plugin)));
}
