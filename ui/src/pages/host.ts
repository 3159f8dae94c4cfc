// One host: its services (state, last error, credential profile), recent errors, entities,
// links to Zabbix; enable/disable, edit, clone, maintenance, remove. Live: refetched on every
// hint about this host.

import { api, canWrite, credentialProfiles, CredentialProfile, enc, HostDetail, hostStatus, Service, zabbix } from "../api";
import { ago, h, localIn, localToRfc3339, mount, when } from "../dom";
import { subscribe } from "../events";
import { badge, busy, confirmDialog, errorText, formDialog, pageHeader, toast } from "../ui";

export function hostPage(root: HTMLElement, params: string[]): () => void {
  const name = params[0];
  let profiles: CredentialProfile[] = [];
  let gen = 0;
  const box = h("div", { "data-test": "action-error" });
  const body = h("div");
  mount(root, pageHeader(name), box, body, h("p", { class: "muted" }, "Loading…"));

  async function load(): Promise<void> {
    const g = ++gen;
    try {
      const d = await api<HostDetail>("GET", `/api/v1/hosts/${enc(name)}`);
      if (g !== gen) return;
      const z = await zabbix();
      if (g !== gen) return;
      draw(d, z?.frontend_url ?? "");
    } catch (e) {
      if (g !== gen) return;
      mount(root, pageHeader(name), h("div", { class: "error-box", role: "alert" }, errorText(e)),
        h("p", null, h("a", { href: "#/hosts" }, "Back to hosts")));
    }
  }

  function draw(d: HostDetail, frontend: string): void {
    const host = d.host;
    const st = hostStatus({ ...host, services: d.services });
    const write = canWrite();
    const btn = (label: string, fn: (b: HTMLButtonElement) => Promise<unknown>, cls = "") => {
      const b = h("button", { type: "button", class: cls, "data-action": label }, label);
      b.addEventListener("click", () => void fn(b));
      return b;
    };
    const actions = write ? [
      host.enabled
        ? btn("Stop monitoring", (b) => busy(b, () => patch({ enabled: false, services: "all" }), box))
        : btn("Monitor host and all services", (b) => busy(b, () => patch({ enabled: true, services: "all" }), box), "primary"),
      btn("Edit", () => edit(d)),
      btn("Clone", (b) => clone(b)),
      host.maintenance
        ? btn("End maintenance", (b) => busy(b, async () => {
          await api("DELETE", `/api/v1/hosts/${enc(name)}/maintenance`);
          toast(`${name}: maintenance ended`, "ok");
          await load();
        }, box))
        : btn("Maintenance…", (b) => maintenance(b)),
      btn("Remove", (b) => remove(b), "danger"),
    ] : [];
    // Zabbix 6.0's Monitoring > Hosts filtered on the name (its row links to the host's latest
    // data, graphs, problems and dashboards) and the dashboards zabbix-sync made for it
    // ("trapline: HOST / plugin").
    const base = frontend.replace(/\/$/, "");
    const zlinks = frontend ? [
      h("a", { href: `${base}/zabbix.php?action=host.view&filter_name=${enc(name)}&filter_set=1`, target: "_blank", rel: "noopener noreferrer", "data-test": "zabbix-host" }, "Zabbix host (latest data, graphs, problems)"),
      " · ",
      h("a", { href: `${base}/zabbix.php?action=dashboard.list&filter_name=${enc(`trapline: ${name}`)}&filter_set=1`, target: "_blank", rel: "noopener noreferrer", "data-test": "zabbix-dashboards" }, "its dashboards"),
    ] : [h("span", { class: "muted" }, "no Zabbix frontend URL configured ([zabbix] frontend_url)")];
    const m = d.maintenance;
    const errors = d.errors ?? [];
    mount(root,
      pageHeader(name, badge(st), ...actions),
      box,
      h("dl", { class: "facts" },
        h("dt", null, "Address"), h("dd", { class: "mono" }, host.address || "—"),
        h("dt", null, "Groups"), h("dd", null, host.groups.join(", ") || "—"),
        h("dt", null, "Monitored"), h("dd", { "data-test": "enabled" }, host.enabled ? "yes" : "no"),
        h("dt", null, "Maintenance"), h("dd", { "data-test": "maintenance" },
          m?.desired?.on ? `on, ${m.desired.until ? `until ${when(m.desired.until)}` : "open-ended"}${m.in_sync ? " (in Zabbix)" : " (being applied to Zabbix)"}` : "off"),
        h("dt", null, "Seen"), h("dd", null, `first ${ago(host.first_seen)}, last ${ago(host.last_seen)}`),
        h("dt", null, "Zabbix"), h("dd", null, ...zlinks)),
      h("h2", null, "Services"),
      servicesTable(d.services, errors),
      h("h2", null, "Recent errors"),
      errors.length === 0 ? h("p", { class: "muted" }, "None.") :
        h("table", { class: "grid", "data-test": "errors" },
          h("thead", null, h("tr", null, h("th", null, "When"), h("th", null, "Plugin"), h("th", null, "Collector"), h("th", null, "Error"))),
          h("tbody", null, ...errors.map((e) => h("tr", null,
            h("td", { title: when(e.at) }, ago(e.at)), h("td", null, e.plugin), h("td", null, e.collector ?? ""), h("td", { class: "err" }, e.message))))),
      h("h2", null, `Entities (${d.entities.length})`),
      d.entities.length === 0 ? h("p", { class: "muted" }, "None reported yet.") :
        h("table", { class: "grid" },
          h("thead", null, h("tr", null, h("th", null, "Plugin"), h("th", null, "Kind"), h("th", null, "Name"), h("th", null, "Last seen"))),
          h("tbody", null, ...d.entities.map((e) => h("tr", { class: e.gone ? "gone" : "" },
            h("td", null, e.plugin), h("td", null, e.kind), h("td", { class: "mono" }, e.name), h("td", null, e.gone ? "gone" : ago(e.last_seen)))))));
  }

  function servicesTable(services: Service[], errors: HostDetail["errors"]): HTMLElement {
    if (services.length === 0) return h("p", { class: "muted" }, "No services known: discovery reports them, or add them by hand.");
    const write = canWrite();
    return h("table", { class: "grid", "data-test": "services" },
      h("thead", null, h("tr", null, ...["Plugin", "Port", "URI", "State", "Monitored", "Credentials", "Collector", "Last error"].map((c) => h("th", null, c)))),
      h("tbody", null, ...services.map((s) => {
        const lastErr = s.last_error ?? (s.state === "error" ? errors.find((e) => e.plugin === s.plugin)?.message : undefined) ?? "";
        const toggle = h("button", { type: "button", "data-action": s.enabled ? "disable service" : "enable service" }, s.enabled ? "Stop" : "Monitor");
        toggle.addEventListener("click", () => void busy(toggle, async () => {
          await api("PATCH", `/api/v1/services/${s.id}`, { enabled: !s.enabled });
          await load();
        }, box));
        let cred: HTMLElement = h("span", null, s.credential_profile ?? "—");
        if (write) {
          const sel = h("select", { "aria-label": `credential profile of ${s.plugin}`, "data-service": String(s.id) },
            h("option", { value: "" }, "(none)"),
            ...profiles.filter((p) => p.kind === s.plugin || (s.plugin === "linux" && p.kind === "ssh")).map((p) => h("option", { value: p.name }, p.name)));
          if (s.credential_profile && ![...sel.options].some((o) => o.value === s.credential_profile)) {
            sel.appendChild(h("option", { value: s.credential_profile }, s.credential_profile));
          }
          sel.value = s.credential_profile ?? "";
          sel.addEventListener("change", () => void busy(null, async () => {
            sel.disabled = true;
            try {
              await api("PATCH", `/api/v1/services/${s.id}`, { credential_profile: sel.value || null });
              toast(`${s.plugin}: credentials ${sel.value || "(none)"}`, "ok");
            } finally {
              sel.disabled = false;
            }
            await load();
          }, box));
          cred = sel;
        }
        return h("tr", { "data-service": String(s.id), "data-plugin": s.plugin, class: s.gone ? "gone" : "" },
          h("td", null, s.plugin), h("td", null, String(s.port || "default")), h("td", { class: "mono" }, s.uri || ""),
          h("td", null, badge(s.enabled ? s.state : "disabled")),
          h("td", null, s.enabled ? "yes " : "no ", write ? toggle : null),
          h("td", null, cred),
          h("td", null, s.collector ?? ""),
          h("td", { class: "err", "data-test": "service-error" }, s.enabled ? lastErr : ""));
      })));
  }

  async function patch(body: Record<string, unknown>): Promise<void> {
    await api("PATCH", `/api/v1/hosts/${enc(name)}`, body);
    await load();
  }

  async function edit(d: HostDetail): Promise<void> {
    const address = h("input", { name: "address", value: d.host.address });
    const groups = h("input", { name: "groups", value: d.host.groups.join(", ") });
    const v = await formDialog({ title: `Edit ${name}`, controls: [["Address", address], ["Groups (comma separated)", groups]], confirm: "Save" });
    if (!v) return;
    await busy(null, () => patch({ address: v.address.trim(), groups: splitList(v.groups) }), box);
  }

  async function clone(b: HTMLButtonElement): Promise<void> {
    const to = h("input", { name: "to", required: true, placeholder: "web02, web03" });
    const v = await formDialog({ title: `Clone ${name}`, body: ["Copies its groups, monitored state and each service's plugin, port and credential profile onto the named hosts (created when missing)."],
      controls: [["New host names (comma separated)", to]], confirm: "Clone" });
    if (!v) return;
    const names = splitList(v.to);
    if (names.length === 0) return;
    const r = await busy(b, () => api("POST", `/api/v1/hosts/${enc(name)}/clone`, { to: names }), box);
    if (r !== undefined) {
      toast(`cloned onto ${names.join(", ")}`, "ok");
      mount(box, h("p", { class: "ok-box" }, "Cloned onto ", ...names.flatMap((n, i) => [i ? ", " : "", h("a", { href: `#/hosts/${enc(n)}` }, n)])));
    }
  }

  async function maintenance(b: HTMLButtonElement): Promise<void> {
    const until = h("input", { type: "datetime-local", name: "until", value: localIn(2), required: true });
    const v = await formDialog({ title: `Maintenance for ${name}`, body: ["Zabbix keeps collecting data; alerts are suppressed."], controls: [["Until (local time)", until]], confirm: "Put into maintenance" });
    if (!v) return;
    const rfc = localToRfc3339(v.until);
    if (!rfc) return toast("choose an end time", "error");
    await busy(b, async () => {
      await api("PUT", `/api/v1/hosts/${enc(name)}/maintenance`, { until: rfc });
      toast(`${name}: in maintenance until ${when(rfc)}`, "ok");
      await load();
    }, box);
  }

  async function remove(b: HTMLButtonElement): Promise<void> {
    const ok = await confirmDialog({ title: `Remove ${name}?`, body: ["Its services, tasks and entities go with it. Its Zabbix host stays."], confirm: "Remove", danger: true });
    if (!ok) return;
    await busy(b, async () => {
      await api("DELETE", `/api/v1/hosts/${enc(name)}`);
      toast(`${name} removed`, "ok");
      location.hash = "#/hosts";
    }, box);
  }

  void credentialProfiles().then((p) => (profiles = p)).catch(() => {}).finally(() => void load());
  const unsub = subscribe((e) => e.host === name || (e.type === "host" && e.id === name) || e.type === "error" || e.many === true, () => void load());
  return () => {
    unsub();
    gen++;
  };
}

export function splitList(v: string): string[] {
  return v.split(/[,\n]/).map((x) => x.trim()).filter(Boolean);
}

