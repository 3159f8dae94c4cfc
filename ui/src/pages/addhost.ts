// Add a host by hand: name, address, groups and its services; "Test connection" runs the probe
// (POST /api/v1/probe) for a service before anything is saved.

import { api, credentialProfiles, CredentialProfile, enc } from "../api";
import { h, mount } from "../dom";
import { badge, busy, complete, errorText, field, pageHeader, toast } from "../ui";
import { splitList } from "./host";

interface ProbeResult {
  ok: boolean;
  error?: string;
  entities?: unknown[];
  samples?: number;
}

const kDefaultPort: Record<string, number> = { linux: 22, postgresql: 5432, redis: 6379 };
const kScheme: Record<string, string> = { linux: "ssh", postgresql: "postgresql", redis: "redis" };

export function addHostPage(root: HTMLElement, _p: string[], query: URLSearchParams): void {
  let profiles: CredentialProfile[] = [];
  const name = h("input", { name: "name", required: true, maxlength: 128, value: query.get("name") ?? "" });
  const address = h("input", { name: "address", required: true, maxlength: 255, placeholder: "10.0.0.5 or db01.example.com" });
  const groups = h("input", { name: "groups", placeholder: "linux servers, production" });
  const groupList = complete(groups, "group");
  const monitored = h("input", { type: "checkbox", name: "enabled", checked: true });
  const services = h("tbody");
  const box = h("div", { "data-test": "add-error" });
  const save = h("button", { type: "submit", class: "primary" }, "Save host");

  function serviceRow(plugin = "linux"): HTMLElement {
    const sel = h("select", { "aria-label": "plugin" }, ...Object.keys(kDefaultPort).map((p) => h("option", { value: p }, p)));
    sel.value = plugin;
    const port = h("input", { type: "number", min: 1, max: 65535, value: kDefaultPort[plugin], "aria-label": "port", class: "port" });
    const cred = h("select", { "aria-label": "credential profile" });
    const fillCred = () => {
      const kind = sel.value === "linux" ? "ssh" : sel.value;
      mount(cred, h("option", { value: "" }, "(none)"), ...profiles.filter((p) => p.kind === kind).map((p) => h("option", { value: p.name }, p.name)));
    };
    fillCred();
    sel.addEventListener("change", () => {
      port.value = String(kDefaultPort[sel.value]);
      fillCred();
    });
    const result = h("span", { class: "probe", "data-test": "probe-result" });
    const test = h("button", { type: "button", "data-action": "test" }, "Test connection");
    test.addEventListener("click", () => void busy(test, async () => {
      mount(result, h("span", { class: "muted" }, "probing…"));
      if (!address.value.trim()) throw new Error("enter the address first");
      const r = await api<ProbeResult>("POST", "/api/v1/probe", { uri: uri(sel.value, Number(port.value)), ...(cred.value ? { credential_profile: cred.value } : {}) });
      mount(result, r.ok
        ? h("span", null, badge("ok"), ` ${r.samples ?? 0} samples, ${r.entities?.length ?? 0} entities`)
        : h("span", null, badge("error"), " ", r.error ?? "failed"));
    }, result));
    const rm = h("button", { type: "button", class: "link", "aria-label": "remove service" }, "Remove");
    const tr = h("tr", null, h("td", null, sel), h("td", null, port), h("td", null, cred), h("td", null, test, " ", result), h("td", null, rm));
    rm.addEventListener("click", () => tr.remove());
    return tr;
  }
  function uri(plugin: string, port: number): string {
    let a = address.value.trim();
    if (a.includes(":") && !a.startsWith("[")) a = `[${a}]`;
    return `${kScheme[plugin]}://${a}:${port}`;
  }

  const form = h("form", { class: "add" },
    h("div", { class: "row" }, field("Name (the Zabbix host name)", name), field("Address", address), field("Groups (comma separated)", groups), groupList),
    h("label", { class: "check" }, monitored, " Monitor it once saved"),
    h("h2", null, "Services"),
    h("table", { class: "grid" },
      h("thead", null, h("tr", null, ...["Plugin", "Port", "Credentials", "Check", ""].map((c) => h("th", null, c)))),
      services),
    h("button", { type: "button", onclick: () => services.appendChild(serviceRow("redis")) }, "Add a service"),
    box,
    h("div", { class: "buttons" }, save));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void busy(save, async () => {
      const n = name.value.trim();
      await api("POST", "/api/v1/hosts", { name: n, address: address.value.trim(), groups: splitList(groups.value), enabled: monitored.checked });
      const failed: string[] = [];
      for (const tr of [...services.querySelectorAll("tr")]) {
        const [plugin, cred] = [...tr.querySelectorAll("select")].map((s) => s.value);
        const port = Number(tr.querySelector("input")!.value);
        try {
          await api("POST", `/api/v1/hosts/${enc(n)}/services`, { plugin, port, enabled: monitored.checked, ...(cred ? { credential_profile: cred } : {}) });
        } catch (err) {
          failed.push(`${plugin}:${port}: ${errorText(err)}`);
        }
      }
      if (failed.length) {
        mount(box, h("div", { class: "error-box", role: "alert" }, `Host ${n} saved, but not these services:`, h("ul", null, ...failed.map((f) => h("li", null, f)))),
          h("a", { href: `#/hosts/${enc(n)}` }, `Open ${n}`));
        return;
      }
      toast(`${n} added`, "ok");
      location.hash = `#/hosts/${enc(n)}`;
    }, box);
  });
  mount(root, pageHeader("Add host"), form);
  void credentialProfiles().then((p) => (profiles = p)).catch((e) => toast(`credential profiles: ${errorText(e)}`, "error"))
    .finally(() => services.appendChild(serviceRow("linux")));
  name.focus();
}
