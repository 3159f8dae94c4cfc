// Discovery: hosts that discovery reported and nobody monitors yet; one click monitors the host
// and every service it reported (PATCH {"enabled": true, "services": "all"}).

import { api, canWrite, enc, HostFacts, HostsPage, q } from "../api";
import { ago, debounce, h, mount } from "../dom";
import { subscribe } from "../events";
import { busy, errorText, pageHeader, servicesCell, toast } from "../ui";

// What the host's last report says of it: "Debian GNU/Linux 12 (bookworm) · 8 CPUs · 15.6 GiB".
function systemText(f: HostFacts | null | undefined): string {
  if (!f) return "";
  const parts: string[] = [];
  if (f.os) parts.push(f.os);
  if (typeof f.cpus === "number") parts.push(`${f.cpus} CPU${f.cpus === 1 ? "" : "s"}`);
  if (typeof f.memory_bytes === "number") parts.push(`${(f.memory_bytes / 2 ** 30).toFixed(1)} GiB`);
  return parts.join(" · ");
}

export function discoveryPage(root: HTMLElement): () => void {
  let limit = 200;
  let gen = 0;
  const text = h("input", { type: "search", placeholder: "name or address…", "aria-label": "search discovered hosts", size: 28 });
  const box = h("div");
  const list = h("div");
  const count = h("span", { class: "muted" });
  mount(root,
    pageHeader("Discovery", count),
    h("p", { class: "muted" }, "Hosts reported by trapline-discover (or added by hand) that are not monitored yet."),
    h("div", { class: "filters" }, text),
    box, list);

  async function load(): Promise<void> {
    const g = ++gen;
    try {
      const r = await api<HostsPage>("GET", `/api/v1/hosts${q({ enabled: "false", q: text.value.trim(), limit })}`);
      if (g !== gen) return;
      count.textContent = `${r.total} not monitored`;
      draw(r);
    } catch (e) {
      if (g === gen) mount(list, h("div", { class: "error-box", role: "alert" }, errorText(e)));
    }
  }
  function draw(r: HostsPage): void {
    if (r.hosts.length === 0) {
      mount(list, h("p", { class: "empty muted" }, "Nothing waiting: every known host is monitored."));
      return;
    }
    mount(list,
      h("table", { class: "grid", "data-test": "discovered" },
        h("thead", null, h("tr", null, ...["Host", "Address", "System", "Services found", "Groups", "First seen", "Last report", ""].map((c) => h("th", null, c)))),
        h("tbody", null, ...r.hosts.map((hr) => {
          const b = h("button", { type: "button", class: "primary", "data-action": "monitor", "aria-label": `monitor ${hr.name} and all its services` }, "Monitor");
          b.disabled = !canWrite();
          b.addEventListener("click", () => void busy(b, async () => {
            await api("PATCH", `/api/v1/hosts/${enc(hr.name)}`, { enabled: true, services: "all" });
            toast(`${hr.name}: monitored with all its services`, "ok");
            await load();
          }, box));
          return h("tr", { "data-host": hr.name },
            h("td", null, h("a", { href: `#/hosts/${enc(hr.name)}` }, hr.name)),
            h("td", { class: "mono" }, hr.address),
            h("td", { "data-test": "system", title: hr.facts?.kernel ? `kernel ${hr.facts.kernel}` : "" }, systemText(hr.facts)),
            h("td", null, servicesCell(hr.services, hr.services_enabled)),
            h("td", null, hr.groups.join(", ")),
            h("td", null, ago(hr.first_seen)),
            h("td", null, hr.discovered ? ago(hr.last_report) : h("span", { class: "muted" }, "added by hand")),
            h("td", null, b));
        }))),
      r.total > r.hosts.length ? h("button", { type: "button", onclick: () => { limit = Math.min(1000, limit + 200); void load(); } }, `Show more (${r.total - r.hosts.length} left)`) : null);
  }
  text.addEventListener("input", debounce(() => void load(), 250));
  const unsub = subscribe((e) => e.type === "host" || e.type === "service", () => void load());
  void load();
  return () => {
    unsub();
    gen++;
  };
}
