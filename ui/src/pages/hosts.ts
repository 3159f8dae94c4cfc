// Hosts: server-side filtering and paging, virtualised rows (only the visible ones exist in the
// DOM, fetched 100 at a time as they scroll into view), selection across pages, bulk actions.

import { api, canWrite, enc, HostRow, HostsPage, hostStatus, lastErrorText, q } from "../api";
import { debounce, h, localIn, localToRfc3339, mount, when } from "../dom";
import { subscribe } from "../events";
import { badge, busy, complete, confirmDialog, errorText, formDialog, pageHeader, servicesCell, toast } from "../ui";

const kRow = 36;       // px, fixed row height (virtualisation)
const kPage = 100;     // rows per request
const kOverscan = 10;  // rows rendered above and below the viewport

interface BulkResult {
  results: { host: string; ok: boolean; error?: string }[];
}

export function hostsPage(root: HTMLElement, _p: string[], query: URLSearchParams): () => void {
  const filters = {
    status: query.get("status") ?? "",
    plugin: query.get("plugin") ?? "",
    group: query.get("group") ?? "",
    q: query.get("q") ?? "",
  };
  let total = 0;
  let gen = 0;                                  // bumps on filter change: late answers are dropped
  let pages = new Map<number, HostRow[]>();     // page index -> rows
  let stale = new Map<number, HostRow[]>();     // shown while the refetch runs (no flicker)
  const inflight = new Set<number>();
  const selected = new Set<string>();
  let lastClicked = -1;
  let rendered = new Map<number, { r: HostRow | undefined; el: HTMLElement }>();
  let loadError = "";

  // ---- controls ----
  const status = h("select", { name: "status", "aria-label": "status" },
    ...["", "ok", "error", "unknown", "disabled", "maintenance"].map((s) =>
      h("option", { value: s }, s === "" ? "any status" : s)));
  status.value = filters.status;
  const plugin = h("input", { name: "plugin", placeholder: "plugin", "aria-label": "plugin", value: filters.plugin, size: 12 });
  const group = h("input", { name: "group", placeholder: "group", "aria-label": "group", value: filters.group, size: 16 });
  const text = h("input", { name: "q", type: "search", placeholder: "name or address…", "aria-label": "search hosts", value: filters.q, size: 28 });
  const lists = [complete(plugin, "plugin"), complete(group, "group"), complete(text, "host")];
  const clear = h("button", { type: "button", onclick: () => {
    status.value = plugin.value = group.value = text.value = "";
    applyFilters();
  } }, "Clear");
  const count = h("span", { class: "muted", "data-test": "total" });

  const selInfo = h("span", { "data-test": "selected" });
  const bulkBox = h("div");
  const bulkButtons: HTMLButtonElement[] = [];
  const bulkBtn = (label: string, fn: (b: HTMLButtonElement) => void, cls = "") => {
    const b = h("button", { type: "button", class: cls, "data-action": label }, label);
    b.addEventListener("click", () => fn(b));
    bulkButtons.push(b);
    return b;
  };
  const bulkBar = h("div", { class: "bulk", role: "toolbar", "aria-label": "bulk actions" },
    selInfo,
    bulkBtn("Enable", (b) => void bulk(b, "enable")),
    bulkBtn("Disable", (b) => void bulk(b, "disable")),
    bulkBtn("Maintenance on", (b) => void maintenanceOn(b)),
    bulkBtn("Maintenance off", (b) => void bulk(b, "maintenance_off")),
    bulkBtn("Move to group", (b) => void moveGroup(b)),
    bulkBtn("Delete", (b) => void remove(b), "danger"),
    h("button", { type: "button", class: "link", onclick: () => { selected.clear(); render(); } }, "Clear selection"),
    bulkBox);
  const selectAll = h("button", { type: "button", class: "link", "data-test": "select-all" }, "");
  selectAll.addEventListener("click", () => void busy(selectAll, selectAllMatching));

  const head = h("div", { class: "hrow head", role: "row" },
    h("span", { role: "columnheader" }, h("input", { type: "checkbox", "aria-label": "select visible", onchange: (e: Event) => toggleVisible((e.target as HTMLInputElement).checked) })),
    ...["Name", "Address", "Status", "Services", "Collector", "Last error", "Maintenance"].map((c) => h("span", { role: "columnheader" }, c)));
  const spacer = h("div", { class: "spacer" });
  const rowsBox = h("div", { class: "rows" });
  const viewport = h("div", { class: "viewport", role: "rowgroup", tabindex: "-1" }, spacer, rowsBox);
  const empty = h("div", { class: "empty" });

  mount(root,
    pageHeader("Hosts", count, canWrite() ? h("a", { class: "button", href: "#/add" }, "Add host") : null),
    h("form", { class: "filters", role: "search", onsubmit: (e: Event) => { e.preventDefault(); applyFilters(); } },
      status, plugin, group, text, clear, ...lists),
    canWrite() ? bulkBar : null,
    h("div", { class: "selectall" }, selectAll),
    h("div", { class: "htable", role: "table", "aria-label": "hosts" }, head, viewport),
    empty);

  // ---- data ----
  function url(page: number): string {
    return `/api/v1/hosts${q({ status: filters.status, plugin: filters.plugin, group: filters.group, q: filters.q, limit: kPage, offset: page * kPage })}`;
  }
  async function load(page: number): Promise<void> {
    if (inflight.has(page)) return;
    inflight.add(page);
    const g = gen;
    try {
      const r = await api<HostsPage>("GET", url(page));
      if (g !== gen) return;
      total = r.total;
      pages.set(page, r.hosts);
      stale.delete(page);
      loadError = "";
    } catch (e) {
      if (g === gen) loadError = errorText(e);
    } finally {
      inflight.delete(page);
      if (g === gen) {
        render();
        if (!loadError) ensureLoaded();  // the total may have grown into the viewport
      }
    }
  }
  function visibleRange(): [number, number] {
    const top = viewport.scrollTop;
    const first = Math.max(0, Math.floor(top / kRow) - kOverscan);
    const last = Math.min(Math.max(total, 1) - 1, Math.ceil((top + viewport.clientHeight) / kRow) + kOverscan);
    return [first, last];
  }
  function row(i: number): HostRow | undefined {
    const p = Math.floor(i / kPage);
    return (pages.get(p) ?? stale.get(p))?.[i % kPage];
  }
  function ensureLoaded(): void {
    const [a, b] = visibleRange();
    for (let p = Math.floor(a / kPage); p <= Math.floor(b / kPage); p++) {
      if (!pages.has(p)) void load(p);
    }
  }
  // Refetch what is on screen (a live hint, or after an action); other pages are dropped.
  function refresh(): void {
    stale = new Map([...stale, ...pages]);
    pages = new Map();
    ensureLoaded();
  }
  function applyFilters(): void {
    filters.status = status.value;
    filters.plugin = plugin.value.trim();
    filters.group = group.value.trim();
    filters.q = text.value.trim();
    const qs = q(filters);
    history.replaceState(null, "", `#/hosts${qs}`);
    gen++;
    pages = new Map();
    stale = new Map();
    inflight.clear();
    rowsBox.replaceChildren();
    rendered = new Map();
    total = 0;
    viewport.scrollTop = 0;
    void load(0);
  }

  // ---- rendering ----
  function render(): void {
    spacer.style.height = `${total * kRow}px`;
    count.textContent = `${total} host${total === 1 ? "" : "s"}`;
    // Keyed by index: a row whose data did not change keeps its element (and the keyboard
    // focus inside it); rows scrolled away are removed, new ones appended (they are absolutely
    // placed, so order does not matter).
    const [a, b] = visibleRange();
    const next = new Map<number, { r: HostRow | undefined; el: HTMLElement }>();
    for (let i = a; i <= b && i < total; i++) {
      const r = row(i);
      const old = rendered.get(i);
      if (old && old.r === r && r) {
        const on = selected.has(r.name);
        old.el.classList.toggle("selected", on);
        (old.el.querySelector("input[type=checkbox]") as HTMLInputElement).checked = on;
        next.set(i, old);
        continue;
      }
      const el = r ? hostRow(r, i) : h("div", { class: "hrow loading" }, h("span"), h("span", { class: "muted" }, "…"));
      el.style.top = `${i * kRow}px`;  // CSSOM, not a style attribute: allowed by the CSP
      next.set(i, { r, el });
    }
    for (const [i, old] of rendered) if (next.get(i)?.el !== old.el) old.el.remove();
    for (const [i, cur] of next) if (rendered.get(i)?.el !== cur.el) rowsBox.appendChild(cur.el);
    rendered = next;
    mount(empty, loadError ? h("div", { class: "error-box", role: "alert" }, loadError)
      : total === 0 && !inflight.size ? h("p", { class: "muted" }, "No host matches.") : null);
    selInfo.textContent = `${selected.size} selected`;
    for (const btn of bulkButtons) if (!btn.getAttribute("aria-busy")) btn.disabled = selected.size === 0;
    selectAll.textContent = total > 0 ? `Select all ${total} matching` : "";
    selectAll.hidden = !canWrite() || total === 0;
  }
  function hostRow(r: HostRow, i: number): HTMLElement {
    const st = hostStatus(r);
    const cb = h("input", { type: "checkbox", "aria-label": `select ${r.name}`, checked: selected.has(r.name) });
    cb.addEventListener("click", (e) => {
      const on = cb.checked;
      if ((e as MouseEvent).shiftKey && lastClicked >= 0) {
        for (let k = Math.min(lastClicked, i); k <= Math.max(lastClicked, i); k++) {
          const x = row(k);
          if (x) (on ? selected.add(x.name) : selected.delete(x.name));
        }
      } else {
        on ? selected.add(r.name) : selected.delete(r.name);
      }
      lastClicked = i;
      render();
    });
    const err = lastErrorText(r.last_error);
    const collectors = r.collectors ?? [];
    return h("div", { class: `hrow ${selected.has(r.name) ? "selected" : ""}`, role: "row", "data-host": r.name },
      h("span", { role: "cell" }, cb),
      h("span", { role: "cell", class: "name" }, h("a", { href: `#/hosts/${enc(r.name)}` }, r.name)),
      h("span", { role: "cell", class: "mono" }, r.address),
      h("span", { role: "cell" }, badge(st)),
      h("span", { role: "cell" }, servicesCell(r.services, r.services_enabled)),
      h("span", { role: "cell", class: "mono" }, collectors.join(", ")),
      h("span", { role: "cell", class: "err", title: err }, err),
      h("span", { role: "cell" }, r.maintenance ? (r.maintenance_until ? `until ${when(r.maintenance_until)}` : "open-ended") : ""));
  }
  function toggleVisible(on: boolean): void {
    const [a, b] = visibleRange();
    for (let i = a; i <= b; i++) {
      const r = row(i);
      if (r) (on ? selected.add(r.name) : selected.delete(r.name));
    }
    render();
  }
  async function selectAllMatching(): Promise<void> {
    const g = gen;
    for (let off = 0; off < total; off += 1000) {
      const r = await api<HostsPage>("GET", `/api/v1/hosts${q({ status: filters.status, plugin: filters.plugin, group: filters.group, q: filters.q, limit: 1000, offset: off })}`);
      if (g !== gen) return;
      for (const x of r.hosts) selected.add(x.name);
    }
    render();
  }

  // ---- bulk actions ----
  async function bulk(btn: HTMLButtonElement, action: string, extra: Record<string, string> = {}): Promise<void> {
    const hosts = [...selected];
    const r = await busy(btn, () => api<BulkResult>("POST", "/api/v1/hosts/bulk", { hosts, action, ...extra }), bulkBox);
    if (!r) return;
    const failed = r.results.filter((x) => !x.ok);
    if (failed.length === 0) {
      toast(`${action.replace("_", " ")}: ${r.results.length} host${r.results.length === 1 ? "" : "s"} done`, "ok");
      selected.clear();
    } else {
      mount(bulkBox, h("div", { class: "error-box", role: "alert" },
        `${failed.length} of ${r.results.length} failed:`,
        h("ul", null, ...failed.slice(0, 20).map((f) => h("li", null, `${f.host}: ${f.error ?? "failed"}`)))));
      for (const x of r.results) if (x.ok) selected.delete(x.host);
    }
    refresh();
  }
  async function maintenanceOn(btn: HTMLButtonElement): Promise<void> {
    const until = h("input", { type: "datetime-local", name: "until", value: localIn(2), required: true });
    const v = await formDialog({ title: `Maintenance for ${selected.size} host${selected.size === 1 ? "" : "s"}`,
      body: ["Zabbix keeps collecting data during the maintenance; alerts are suppressed."],
      controls: [["Until (local time)", until]], confirm: "Put into maintenance" });
    if (!v) return;
    const rfc = localToRfc3339(v.until);
    if (!rfc) return toast("choose an end time", "error");
    await bulk(btn, "maintenance_on", { until: rfc });
  }
  async function moveGroup(btn: HTMLButtonElement): Promise<void> {
    const g = h("input", { name: "group", required: true });
    const list = complete(g, "group");
    const v = await formDialog({ title: `Move ${selected.size} host${selected.size === 1 ? "" : "s"} to a group`, body: [list], controls: [["Group", g]], confirm: "Move" });
    if (!v) return;
    await bulk(btn, "move_group", { group: v.group.trim() });
  }
  async function remove(btn: HTMLButtonElement): Promise<void> {
    const names = [...selected];
    const ok = await confirmDialog({
      title: `Delete ${names.length} host${names.length === 1 ? "" : "s"}?`,
      body: [`${names.slice(0, 8).join(", ")}${names.length > 8 ? ` and ${names.length - 8} more` : ""}.`,
        "Their services, tasks and entities go with them. Their Zabbix hosts stay."],
      confirm: "Delete", danger: true, typed: names.length > 1 ? `delete ${names.length}` : undefined,
    });
    if (ok) await bulk(btn, "delete");
  }

  // ---- wiring ----
  const onScroll = () => {
    render();
    ensureLoaded();
  };
  viewport.addEventListener("scroll", onScroll, { passive: true });
  const onResize = debounce(onScroll, 100);
  window.addEventListener("resize", onResize);
  const typed = debounce(applyFilters, 250);
  for (const c of [plugin, group, text]) c.addEventListener("input", typed);
  status.addEventListener("change", applyFilters);
  const unsub = subscribe((e) => ["host", "service", "error", "task"].includes(e.type), refresh);
  // "/" jumps to the search box (as in many consoles), unless typing somewhere already.
  const onKey = (e: KeyboardEvent) => {
    const t = e.target as HTMLElement;
    if (e.key === "/" && !["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName) && !document.querySelector("dialog[open]")) {
      e.preventDefault();
      text.focus();
    }
  };
  document.addEventListener("keydown", onKey);
  text.title = "search (press / to jump here)";
  applyFilters();
  return () => {
    document.removeEventListener("keydown", onKey);
    unsub();
    window.removeEventListener("resize", onResize);
    gen++;
  };
}
