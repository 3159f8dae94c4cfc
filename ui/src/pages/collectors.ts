// Collectors: state, weight (editable), tasks, event-loop lag and CPU now and over the last
// hour (the leader samples them every 15 s: GET /api/v1/collectors/{name}/history).

import { api, canWrite, Collector, enc, listOf, zabbix } from "../api";
import { h, mount } from "../dom";
import { sparkline } from "../chart";
import { subscribe } from "../events";
import { badge, busy, errorText, pageHeader, toast } from "../ui";

interface Point {
  at: string;
  lag_p99_ms: number | null;
  cpu_pct: number | null;
  tasks: number | null;
}

export function collectorsPage(root: HTMLElement): () => void {
  let gen = 0;
  const history = new Map<string, Point[]>();
  let historyAt = 0;
  const editing = new Set<string>();  // weight inputs being edited are not redrawn
  const box = h("div");
  const table = h("div");
  mount(root, pageHeader("Collectors"), box, table);

  async function load(): Promise<void> {
    const g = ++gen;
    try {
      const cs = listOf<Collector>(await api("GET", "/api/v1/collectors"), "collectors");
      if (Date.now() - historyAt > 15000) {
        historyAt = Date.now();
        await Promise.all(cs.map(async (c) => {
          try {
            const r = await api<{ points: Point[] }>("GET", `/api/v1/collectors/${enc(c.name)}/history?minutes=60`);
            history.set(c.name, r.points ?? []);
          } catch {
            history.set(c.name, []);
          }
        }));
      }
      const z = await zabbix();
      if (g !== gen) return;
      if (editing.size === 0) draw(cs, z?.frontend_url ?? "");
    } catch (e) {
      if (g === gen) mount(table, h("div", { class: "error-box", role: "alert" }, errorText(e)));
    }
  }
  // The collector's own host in Zabbix (plugin trapline), when it has one and the frontend's
  // URL is known.
  function zabbixLink(c: Collector, frontend: string): HTMLElement | null {
    const host = c.load?.self_host;
    if (!host || !frontend) return null;
    const base = frontend.replace(/\/+$/, "");
    return h("a", { href: `${base}/zabbix.php?action=host.view&filter_name=${enc(host)}&filter_set=1`, target: "_blank", rel: "noopener noreferrer", class: "muted", "data-test": "collector-zabbix", title: `its own health in Zabbix: host ${host}` }, " (Zabbix)");
  }
  function draw(cs: Collector[], frontend: string): void {
    if (cs.length === 0) {
      mount(table, h("p", { class: "muted" }, "No collector has registered with the registry yet."));
      return;
    }
    mount(table, h("table", { class: "grid", "data-test": "collectors" },
      h("thead", null, h("tr", null, ...["Name", "State", "Weight", "Tasks", "Lag p99 (1 h)", "CPU (1 h)", "Heartbeat", "Address", "Version"].map((c) => h("th", null, c)))),
      h("tbody", null, ...cs.map((c) => {
        const pts = history.get(c.name) ?? [];
        const series = (k: "lag_p99_ms" | "cpu_pct") => pts.map((p) => ({ t: Date.parse(p.at), v: p[k] }));
        if (!pts.length && c.load) {
          // no history yet: at least the current value
          if (c.load.lag_p99_ms !== undefined) pts.push({ at: new Date().toISOString(), lag_p99_ms: c.load.lag_p99_ms, cpu_pct: c.load.cpu_pct ?? null, tasks: c.tasks });
        }
        return h("tr", { "data-collector": c.name },
          h("td", null, c.name, zabbixLink(c, frontend)),
          h("td", null, badge(c.state)),
          h("td", null, weightCell(c)),
          h("td", null, String(c.tasks)),
          h("td", null, sparkline(series("lag_p99_ms"), { label: "event-loop lag p99", unit: "ms" })),
          h("td", null, sparkline(series("cpu_pct"), { label: "CPU", unit: "%" })),
          h("td", null, c.heartbeat_age_s === null || c.heartbeat_age_s === undefined ? "never" : `${c.heartbeat_age_s} s ago`),
          h("td", { class: "mono" }, c.address),
          h("td", null, c.version));
      }))));
  }
  function weightCell(c: Collector): HTMLElement {
    if (!canWrite()) return h("span", null, String(c.weight));
    const input = h("input", { type: "number", min: "0.01", step: "any", value: c.weight, class: "weight", "aria-label": `weight of ${c.name}` });
    const save = h("button", { type: "submit" }, "Set");
    const form = h("form", { class: "inline" }, input, save);
    input.addEventListener("focus", () => editing.add(c.name));
    input.addEventListener("blur", () => setTimeout(() => editing.delete(c.name), 200));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(save, async () => {
        const w = Number(input.value);
        if (!(w > 0)) throw new Error("the weight must be a number above 0");
        await api("PATCH", `/api/v1/collectors/${enc(c.name)}`, { weight: w });
        toast(`${c.name}: weight ${w}`, "ok");
        editing.delete(c.name);
        await load();
      }, box);
    });
    return form;
  }
  const timer = window.setInterval(() => void load(), 15000);
  const unsub = subscribe((e) => e.type === "collector" || e.type === "task", () => void load());
  void load();
  return () => {
    unsub();
    clearInterval(timer);
    gen++;
  };
}
