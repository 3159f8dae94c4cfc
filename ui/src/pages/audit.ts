// Audit log: who did what, when, to what, before and after; filtered on the server.

import { api, AuditRow, listOf, q } from "../api";
import { debounce, h, localToRfc3339, mount, when } from "../dom";
import { subscribe } from "../events";
import { errorText, pageHeader } from "../ui";

const kLimit = 100;

export function auditPage(root: HTMLElement, _p: string[], query: URLSearchParams): () => void {
  let offset = 0;
  let gen = 0;
  const mk = (name: string, placeholder: string, size = 14) =>
    h("input", { name, placeholder, "aria-label": placeholder, size, value: query.get(name) ?? "" });
  const actor = mk("actor", "actor (user)");
  const action = mk("action", "action (host.update)");
  const objectType = mk("object_type", "object type", 10);
  const object = mk("object", "object (host name, id)");
  const since = h("input", { type: "datetime-local", name: "since", "aria-label": "since" });
  const until = h("input", { type: "datetime-local", name: "until", "aria-label": "until" });
  const list = h("div");
  const pager = h("div", { class: "pager" });
  mount(root, pageHeader("Audit log"),
    h("form", { class: "filters", role: "search", onsubmit: (e: Event) => { e.preventDefault(); reset(); } },
      actor, action, objectType, object, h("label", null, "since ", since), h("label", null, "until ", until)),
    list, pager);

  function params() {
    return { actor: actor.value.trim(), action: action.value.trim(), object_type: objectType.value.trim(), object: object.value.trim(),
      since: localToRfc3339(since.value), until: localToRfc3339(until.value) };
  }
  function reset(): void {
    offset = 0;
    history.replaceState(null, "", `#/audit${q({ actor: actor.value.trim(), action: action.value.trim(), object_type: objectType.value.trim(), object: object.value.trim() })}`);
    void load();
  }
  async function load(): Promise<void> {
    const g = ++gen;
    try {
      const r = await api("GET", `/api/v1/audit${q({ ...params(), limit: kLimit, offset })}`);
      if (g !== gen) return;
      const rows = listOf<AuditRow>(r, "entries", "audit", "rows");
      draw(rows);
      const total = (r as { total?: number }).total;
      mount(pager,
        offset > 0 ? h("button", { type: "button", onclick: () => { offset = Math.max(0, offset - kLimit); void load(); } }, "Newer") : null,
        rows.length === kLimit ? h("button", { type: "button", onclick: () => { offset += kLimit; void load(); } }, "Older") : null,
        h("span", { class: "muted" }, rows.length ? ` ${offset + 1}–${offset + rows.length}${total !== undefined ? ` of ${total}` : ""}` : ""));
    } catch (e) {
      if (g === gen) mount(list, h("div", { class: "error-box", role: "alert" }, errorText(e)));
    }
  }
  function draw(rows: AuditRow[]): void {
    if (rows.length === 0) {
      mount(list, h("p", { class: "muted empty" }, "No entry matches."));
      return;
    }
    mount(list, h("table", { class: "grid audit", "data-test": "audit" },
      h("thead", null, h("tr", null, ...["When", "Who", "Action", "Object", "Before", "After"].map((c) => h("th", null, c)))),
      h("tbody", null, ...rows.map((r) => h("tr", { "data-action": r.action, "data-actor": r.actor },
        h("td", { title: r.at }, when(r.at)),
        h("td", null, r.actor),
        h("td", { class: "mono" }, r.action),
        h("td", null, `${r.object_type} `, h("span", { class: "mono" }, r.object_id)),
        h("td", null, jsonCell(r.before)),
        h("td", null, jsonCell(r.after)))))));
  }
  function jsonCell(v: unknown): HTMLElement {
    if (v === null || v === undefined) return h("span", { class: "muted" }, "—");
    const text = JSON.stringify(v, null, 1);
    if (text.length <= 80) return h("code", { class: "json" }, JSON.stringify(v));
    return h("details", null, h("summary", null, h("code", null, `${JSON.stringify(v).slice(0, 60)}…`)), h("pre", null, text));
  }
  const typed = debounce(reset, 300);
  for (const c of [actor, action, objectType, object]) c.addEventListener("input", typed);
  for (const c of [since, until]) c.addEventListener("change", reset);
  const unsub = subscribe((e) => e.type === "audit" && offset === 0, () => void load());
  void load();
  return () => {
    unsub();
    gen++;
  };
}
