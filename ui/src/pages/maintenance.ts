// Maintenance: which hosts are in maintenance and until when; put one in (with an end time) or
// take it out. Zabbix gets a maintenance with data collection (the coordinator applies it).

import { api, canWrite, enc, HostsPage, q } from "../api";
import { ago, h, localIn, localToRfc3339, mount, when } from "../dom";
import { subscribe } from "../events";
import { busy, complete, errorText, field, pageHeader, toast } from "../ui";

export function maintenancePage(root: HTMLElement): () => void {
  let gen = 0;
  const box = h("div");
  const list = h("div");
  const host = h("input", { name: "host", required: true, placeholder: "host name", "aria-label": "host" });
  const hostList = complete(host, "host");
  const until = h("input", { type: "datetime-local", name: "until", value: localIn(2), required: true, "aria-label": "until" });
  const put = h("button", { type: "submit", class: "primary" }, "Put into maintenance");
  const form = h("form", { class: "inline-form" }, field("Host", host), hostList, field("Until (local time)", until), put);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void busy(put, async () => {
      const rfc = localToRfc3339(until.value);
      if (!rfc) throw new Error("choose an end time");
      await api("PUT", `/api/v1/hosts/${enc(host.value.trim())}/maintenance`, { until: rfc });
      toast(`${host.value.trim()}: in maintenance until ${when(rfc)}`, "ok");
      host.value = "";
      await load();
    }, box);
  });
  mount(root, pageHeader("Maintenance"),
    h("p", { class: "muted" }, "Zabbix keeps collecting data during a maintenance; its alerts are suppressed. Many hosts at once: select them on the Hosts page."),
    canWrite() ? form : null, box, list);

  async function load(): Promise<void> {
    const g = ++gen;
    try {
      const r = await api<HostsPage>("GET", `/api/v1/hosts${q({ status: "maintenance", limit: 1000 })}`);
      if (g !== gen) return;
      const hosts = r.hosts.filter((x) => x.maintenance);
      if (hosts.length === 0) {
        mount(list, h("p", { class: "muted empty" }, "No host is in maintenance."));
        return;
      }
      mount(list, h("table", { class: "grid", "data-test": "maintenance" },
        h("thead", null, h("tr", null, ...["Host", "Until", "Ends", ""].map((c) => h("th", null, c)))),
        h("tbody", null, ...hosts.map((x) => {
          const out = h("button", { type: "button", "data-action": "end" }, "Take out");
          out.disabled = !canWrite();
          out.addEventListener("click", () => void busy(out, async () => {
            await api("DELETE", `/api/v1/hosts/${enc(x.name)}/maintenance`);
            toast(`${x.name}: maintenance ended`, "ok");
            await load();
          }, box));
          return h("tr", { "data-host": x.name },
            h("td", null, h("a", { href: `#/hosts/${enc(x.name)}` }, x.name)),
            h("td", null, x.maintenance_until ? when(x.maintenance_until) : "open-ended"),
            h("td", null, x.maintenance_until ? ago(x.maintenance_until) : ""),
            h("td", null, out));
        }))));
    } catch (e) {
      if (g === gen) mount(list, h("div", { class: "error-box", role: "alert" }, errorText(e)));
    }
  }
  const unsub = subscribe((e) => e.type === "host", () => void load());
  void load();
  return () => {
    unsub();
    gen++;
  };
}
