// The admin panel: hash routes (#/hosts, #/hosts/NAME, ...) so that the coordinator serves
// plain files; a page is a function that fills the main area and returns its cleanup.

import "./style.css";
import { api, currentSession, Session, setSession, setUnauthorizedHandler } from "./api";
import { h, mount } from "./dom";
import { onLiveState, startEvents, stopEvents } from "./events";
import { errorText } from "./ui";
import { loginPage } from "./pages/login";
import { hostsPage } from "./pages/hosts";
import { hostPage } from "./pages/host";
import { discoveryPage } from "./pages/discovery";
import { addHostPage } from "./pages/addhost";
import { collectorsPage } from "./pages/collectors";
import { maintenancePage } from "./pages/maintenance";
import { auditPage } from "./pages/audit";
import { settingsPage } from "./pages/settings";

export type Cleanup = () => void;
export type Page = (root: HTMLElement, params: string[], query: URLSearchParams) => Cleanup | void;

const routes: [RegExp, Page, string][] = [
  [/^\/hosts\/?$/, hostsPage, "Hosts"],
  [/^\/hosts\/([^/]+)$/, hostPage, "Hosts"],
  [/^\/discovery$/, discoveryPage, "Discovery"],
  [/^\/add$/, addHostPage, "Add host"],
  [/^\/collectors$/, collectorsPage, "Collectors"],
  [/^\/maintenance$/, maintenancePage, "Maintenance"],
  [/^\/audit$/, auditPage, "Audit log"],
  [/^\/settings$/, settingsPage, "Settings"],
];
const nav: [string, string][] = [
  ["#/hosts", "Hosts"], ["#/discovery", "Discovery"], ["#/add", "Add host"],
  ["#/collectors", "Collectors"], ["#/maintenance", "Maintenance"], ["#/audit", "Audit log"],
  ["#/settings", "Settings"],
];

const app = document.getElementById("app")!;
let cleanup: Cleanup | void;
const live = h("span", { class: "live", title: "live updates (server-sent events)", "data-test": "live" }, "…");
onLiveState((up) => {
  live.classList.toggle("up", up);
  live.textContent = up ? "live" : "reconnecting…";
});

function parseHash(): { path: string; query: URLSearchParams } {
  const raw = location.hash.replace(/^#/, "") || "/hosts";
  const i = raw.indexOf("?");
  return { path: i < 0 ? raw : raw.slice(0, i), query: new URLSearchParams(i < 0 ? "" : raw.slice(i + 1)) };
}

function shell(active: string): HTMLElement {
  const s = currentSession()!;
  const logout = h("button", { class: "link", onclick: async () => {
    try {
      await api("DELETE", "/api/v1/session");
    } catch {
      // the session ends here either way
    }
    setSession(null);
    stopEvents();
    location.hash = "#/login";
  } }, "Log out");
  const main = h("main", { id: "main", tabindex: "-1" });
  mount(app,
    h("a", { class: "skip", href: "#main", onclick: (e: Event) => { e.preventDefault(); main.focus(); } }, "Skip to content"),
    h("nav", { class: "top", "aria-label": "main" },
      h("span", { class: "brand" }, "trapline"),
      h("ul", null, ...nav.map(([href, label]) =>
        h("li", null, h("a", { href, "aria-current": label === active ? "page" : null }, label)))),
      h("span", { class: "who" }, live, h("span", { "data-test": "user" }, `${s.user} (${s.role})`), logout)),
    main);
  return main;
}

async function route(): Promise<void> {
  if (cleanup) cleanup();
  cleanup = undefined;
  const { path, query } = parseHash();
  if (path === "/login") {
    stopEvents();
    cleanup = loginPage(app, [], query);
    return;
  }
  if (!currentSession()) {
    try {
      setSession(await api<Session>("GET", "/api/v1/session"));
    } catch {
      location.hash = `#/login?next=${encodeURIComponent(path)}`;
      return;
    }
  }
  startEvents();
  for (const [re, page, label] of routes) {
    const m = re.exec(path);
    if (!m) continue;
    const main = shell(label);
    document.title = `${label} · trapline`;
    try {
      cleanup = page(main, m.slice(1).map((x) => decodeURIComponent(x)), query);
    } catch (e) {
      mount(main, h("div", { class: "error-box" }, errorText(e)));
    }
    return;
  }
  const main = shell("");
  mount(main, h("h1", null, "Not found"), h("p", null, "No page at ", h("code", null, path), ". ", h("a", { href: "#/hosts" }, "Hosts")));
}

setUnauthorizedHandler(() => {
  const { path } = parseHash();
  if (path !== "/login") location.hash = `#/login?next=${encodeURIComponent(path)}`;
});
window.addEventListener("hashchange", () => void route());
void route();

