// The admin panel's browser scenarios (issue 7's tests), one per run:
//   node tests/ui/panel.cjs SCENARIO '{"json": "args"}'
// tests/integration/test_ui.py starts a registry, Zabbix, a coordinator serving the panel, a
// collector and targets, then runs these and checks Zabbix and the registry itself.

const { env, check, say, launch, login, shot, apiAsToken, waitFor, main, withPanel } = require("./lib.cjs");

const hostRow = (page, name) => page.locator(`.hrow[data-host="${name}"]`);

async function markNoReload(page) {
  await page.evaluate(() => { window.__trapline_no_reload = 1; });
}
async function checkNoReload(page) {
  check(await page.evaluate(() => window.__trapline_no_reload === 1), "the page was reloaded");
}

const scenarios = {
  // Wrong password: the server's error text shown; right one: the hosts page, with the user.
  // The session cookie is HttpOnly (scripts cannot read it).
  async login() {
    const b = await launch(1280);
    try {
      await b.page.goto(env.url + "#/hosts");
      await b.page.waitForURL(/#\/login/);  // no session: to the login page
      await b.page.getByLabel("User").fill(env.user);
      await b.page.getByLabel("Password").fill("not-the-password");
      await b.page.getByRole("button", { name: "Log in" }).click();
      const err = await b.page.locator("[data-test=login-error] .error-box").textContent();
      check(err && err.length > 3, `no error shown for a wrong password: ${err}`);
      say(`wrong password: "${err}"`);
      await b.page.getByLabel("Password").fill(env.password);
      await b.page.getByRole("button", { name: "Log in" }).click();
      await b.page.locator("[data-test=user]").waitFor();
      check(/#\/hosts/.test(b.page.url()), `after login at ${b.page.url()}`);
      const who = await b.page.locator("[data-test=user]").textContent();
      check(who.includes(env.user), `user shown: ${who}`);
      const cookies = await b.context.cookies();
      const sess = cookies.find((c) => c.name === "trapline_session");
      check(sess && sess.httpOnly && sess.sameSite === "Strict", `session cookie ${JSON.stringify(sess)}`);
      check(!(await b.page.evaluate(() => document.cookie)).includes("trapline_session"), "cookie readable by scripts");
      // The session gone (logged out elsewhere, expired): the next API call answers 401, the
      // panel goes to the login page and, once logged in again, back to where the user was.
      await b.context.clearCookies();
      await b.page.goto(env.url + "#/collectors");
      await b.page.waitForURL(/#\/login\?next=%2Fcollectors/);
      await b.page.getByLabel("User").fill(env.user);
      await b.page.getByLabel("Password").fill(env.password);
      await b.page.getByRole("button", { name: "Log in" }).click();
      await b.page.locator("[data-test=collectors]").waitFor();
      say("session gone: to the login page, and back to Collectors after logging in again");
      check(b.problems.length === 0, b.problems.join("; "));
      return { error_text: err, user: who };
    } finally {
      await b.browser.close();
    }
  },

  // Discovery page: one click monitors the host and all its services; its page then turns ok.
  async monitor_discovered({ host }) {
    return withPanel(async (page) => {
      await page.goto(env.url + "#/discovery");
      const row = page.locator(`tr[data-host="${host}"]`);
      await row.waitFor();
      const system = (await row.locator("[data-test=system]").textContent()).trim();
      say(`${host} on the Discovery page: ${system}`);
      const t0 = Date.now();
      await row.getByRole("button", { name: /monitor/i }).click();
      await row.waitFor({ state: "detached" });
      say(`${host} left the discovery list ${Date.now() - t0} ms after the click`);
      await page.goto(env.url + `#/hosts/${encodeURIComponent(host)}`);
      await markNoReload(page);
      await page.locator("[data-test=enabled]", { hasText: "yes" }).waitFor();
      await page.locator(".page-header .badge[data-status=ok]").waitFor({ timeout: 60000 });
      const ok_ms = Date.now() - t0;
      await checkNoReload(page);
      const services = await page.locator("[data-test=services] tbody tr").count();
      say(`${host}: status ok on its page ${ok_ms} ms after the click (no reload), ${services} services`);
      return { ok_ms, services, system };
    });
  },

  // The host page's Zabbix links, followed into the real Zabbix frontend (logged in there):
  // the host in Monitoring > Hosts, and the dashboards zabbix-sync made for it.
  async zabbix_links({ host, zabbix_user, zabbix_password, dashboard }) {
    return withPanel(async (page, b) => {
      await page.goto(env.url + `#/hosts/${encodeURIComponent(host)}`);
      const hostHref = await page.locator("[data-test=zabbix-host]").getAttribute("href");
      const dashHref = await page.locator("[data-test=zabbix-dashboards]").getAttribute("href");
      const z = await b.context.newPage();
      const origin = new URL(hostHref).origin + new URL(hostHref).pathname.replace(/zabbix\.php$/, "");
      await z.goto(origin + "index.php");
      await z.locator("#name").fill(zabbix_user);
      await z.locator("#password").fill(zabbix_password);
      await z.locator("#enter").click();
      await z.waitForURL(/dashboard|zabbix\.php/);
      await z.goto(hostHref);
      await z.locator("table.list-table").getByText(host, { exact: true }).first().waitFor();
      await z.goto(dashHref);
      await z.getByText(dashboard).first().waitFor();
      await z.screenshot({ path: require("path").join(env.shots, "zabbix-dashboards-from-panel-1280.png") });
      say(`Zabbix links of ${host}: the host in Monitoring > Hosts, dashboard "${dashboard}" listed`);
      return { host_link: hostHref, dashboards_link: dashHref };
    });
  },

  // A change made elsewhere (the API with the bearer token) shows on the hosts page within 2 s.
  async live_status({ host }) {
    return withPanel(async (page) => {
      await page.goto(env.url + `#/hosts?q=${encodeURIComponent(host)}`);
      const row = hostRow(page, host);
      await row.waitFor();
      await markNoReload(page);
      const before = await row.locator(".badge").getAttribute("data-status");
      const until = new Date(Date.now() + 3600e3).toISOString().replace(/\.\d+Z$/, "Z");
      const t0 = Date.now();
      await apiAsToken("PUT", `/api/v1/hosts/${encodeURIComponent(host)}/maintenance`, { until });
      await row.locator('.badge[data-status="maintenance"]').waitFor({ timeout: 10000 });
      const on_ms = Date.now() - t0;
      const t1 = Date.now();
      await apiAsToken("DELETE", `/api/v1/hosts/${encodeURIComponent(host)}/maintenance`);
      await row.locator(`.badge[data-status="${before}"]`).waitFor({ timeout: 10000 });
      const off_ms = Date.now() - t1;
      await checkNoReload(page);
      const live = await page.locator("[data-test=live]").textContent();
      check(live === "live", `the event stream is not up: "${live}"`);
      say(`${host}: ${before} -> maintenance shown after ${on_ms} ms, back to ${before} after ${off_ms} ms (stream: ${live})`);
      check(on_ms < 2000 && off_ms < 2000, `a status change took ${on_ms}/${off_ms} ms to show (limit 2000)`);
      return { on_ms, off_ms, stream: live };
    });
  },

  // The coordinator restarts under an open page: the stream drops ("reconnecting…"), comes back
  // by itself ("live"), and changes show live again. Prints READY for test_ui.py to restart it.
  async reconnect({ host }) {
    return withPanel(async (page) => {
      await page.goto(env.url + `#/hosts?q=${encodeURIComponent(host)}`);
      const row = hostRow(page, host);
      await row.waitFor();
      const live = page.locator("[data-test=live]");
      await live.filter({ hasText: /^live$/ }).waitFor();
      await markNoReload(page);
      process.stdout.write("READY\n");
      await live.filter({ hasText: "reconnecting" }).waitFor({ timeout: 30000 });
      const t0 = Date.now();
      await live.filter({ hasText: /^live$/ }).waitFor({ timeout: 30000 });
      const back_ms = Date.now() - t0;
      const until = new Date(Date.now() + 3600e3).toISOString().replace(/\.\d+Z$/, "Z");
      const t1 = Date.now();
      await apiAsToken("PUT", `/api/v1/hosts/${encodeURIComponent(host)}/maintenance`, { until });
      await row.locator('.badge[data-status="maintenance"]').waitFor({ timeout: 10000 });
      const shown_ms = Date.now() - t1;
      await apiAsToken("DELETE", `/api/v1/hosts/${encodeURIComponent(host)}/maintenance`);
      await checkNoReload(page);
      check(shown_ms < 2000, `a change after the reconnect took ${shown_ms} ms to show`);
      say(`coordinator restarted: stream back ${back_ms} ms after it dropped, without reload; a change then shown in ${shown_ms} ms`);
      return { back_ms, shown_ms };
    });
  },

  // Hosts page: select hosts, Maintenance on with an end time, confirm.
  async bulk_maintenance({ hosts, q }) {
    return withPanel(async (page) => {
      await page.goto(env.url + `#/hosts?q=${encodeURIComponent(q)}`);
      for (const h of hosts) {
        await hostRow(page, h).getByRole("checkbox").check();
      }
      const sel = await page.locator("[data-test=selected]").textContent();
      check(sel.startsWith(`${hosts.length} selected`), `selection: ${sel}`);
      await page.getByRole("toolbar").getByRole("button", { name: "Maintenance on" }).click();
      const dlg = page.locator("dialog[open]");
      await dlg.waitFor();
      await shot(page, "hosts-bulk-maintenance-dialog");
      await dlg.locator("[data-test=confirm]").click();
      await page.locator(".toast.ok", { hasText: "maintenance on" }).waitFor();
      for (const h of hosts) {
        await hostRow(page, h).locator('.badge[data-status="maintenance"]').waitFor({ timeout: 10000 });
      }
      say(`${hosts.length} hosts in maintenance from the hosts page`);
      return { hosts };
    });
  },

  // Settings: a credential profile made with a password (shown only as "set"), a user added.
  async settings({ profile, secret, user, password }) {
    return withPanel(async (page) => {
      await page.goto(env.url + "#/settings");
      const form = page.locator("form[aria-label='new credential profile']");
      await form.locator("input[name=name]").fill(profile);
      await form.locator("select[name=kind]").selectOption("redis");
      await form.locator("input[name='secret.password']").fill(secret);
      await form.locator("input[name=options]").fill('{"interval": 10}');
      await form.locator("input[name=host_groups]").fill("ui group, db/redis");
      await form.locator("input[name=is_default]").check();
      await form.getByRole("button", { name: "Create profile" }).click();
      const row = page.locator(`[data-test=profiles] tr[data-profile="${profile}"]`);
      await row.waitFor();
      const text = await row.textContent();
      check(text.includes("set (write-only)"), `profile row: ${text}`);
      check(await form.locator("input[name='secret.password']").inputValue() === "", "the password stays in the form");
      check(!(await page.content()).includes(secret), "the secret is in the page");
      const uf = page.locator("form[aria-label='new user']");
      await uf.locator("input[name=name]").fill(user);
      await uf.locator("select[name=role]").selectOption("operator");
      await uf.locator("input[name=password]").fill(password);
      await uf.getByRole("button", { name: "Add user" }).click();
      await page.locator(`[data-test=users] tr[data-user="${user}"]`).waitFor();
      say(`profile ${profile} created (secret shown only as "set"), user ${user} added as operator`);
      return {};
    });
  },

  // Collectors: the weight edited in place.
  async collector_weight({ collector, weight }) {
    return withPanel(async (page) => {
      await page.goto(env.url + "#/collectors");
      const input = page.getByLabel(`weight of ${collector}`);
      await input.fill(String(weight));
      await page.locator(`tr[data-collector="${collector}"]`).getByRole("button", { name: "Set" }).click();
      await page.locator(".toast.ok", { hasText: `weight ${weight}` }).waitFor();
      say(`${collector}: weight set to ${weight} on the Collectors page`);
      const link = page.locator(`tr[data-collector="${collector}"] [data-test=collector-zabbix]`);
      await link.waitFor();
      const zabbix_href = await link.getAttribute("href");
      say(`${collector}: its own Zabbix host linked: ${zabbix_href}`);
      return { zabbix_href };
    });
  },

  // Bulk delete asks for "delete N" to be typed; Cancel changes nothing; then it deletes.
  async bulk_delete({ hosts, q }) {
    return withPanel(async (page) => {
      await page.goto(env.url + `#/hosts?q=${encodeURIComponent(q)}`);
      for (const h of hosts) await hostRow(page, h).getByRole("checkbox").check();
      const toolbar = page.getByRole("toolbar");
      await toolbar.getByRole("button", { name: "Delete" }).click();
      let dlg = page.locator("dialog[open]");
      const confirm = dlg.locator("[data-test=confirm]");
      check(await confirm.isDisabled(), "Delete can be confirmed without typing");
      await dlg.getByRole("textbox").fill(`delete ${hosts.length - 1}`);
      check(await confirm.isDisabled(), "Delete confirmed with the wrong count typed");
      await dlg.getByRole("button", { name: "Cancel" }).click();
      await dlg.waitFor({ state: "detached" });
      for (const h of hosts) await hostRow(page, h).waitFor();  // still there
      await toolbar.getByRole("button", { name: "Delete" }).click();
      dlg = page.locator("dialog[open]");
      await dlg.getByRole("textbox").fill(`delete ${hosts.length}`);
      await dlg.locator("[data-test=confirm]").click();
      await page.locator(".toast.ok", { hasText: "delete" }).waitFor();
      for (const h of hosts) await hostRow(page, h).waitFor({ state: "detached" });
      say(`bulk delete of ${hosts.join(", ")}: refused until "delete ${hosts.length}" was typed, cancel kept them, then deleted`);
      return {};
    });
  },

  // Maintenance page: take a host out, put it back in with an end time (host completion).
  async maintenance_page({ host }) {
    return withPanel(async (page) => {
      await page.goto(env.url + "#/maintenance");
      const row = page.locator(`[data-test=maintenance] tr[data-host="${host}"]`);
      await row.getByRole("button", { name: "Take out" }).click();
      await row.waitFor({ state: "detached" });
      const hostInput = page.locator("form.inline-form input[name=host]");
      await hostInput.fill(host.slice(0, 4));
      await waitFor(async () => (await page.locator("datalist option").evaluateAll((os) => os.map((o) => o.value))).includes(host), 5000, "host suggestions");
      await hostInput.fill(host);
      await page.locator("form.inline-form input[name=until]").fill("2031-01-02T03:04");
      await page.getByRole("button", { name: "Put into maintenance" }).click();
      await page.locator(`[data-test=maintenance] tr[data-host="${host}"]`).waitFor();
      say(`${host}: taken out of maintenance and put back until 2031-01-02 03:04 (local) from the Maintenance page`);
      return {};
    });
  },

  // Host page: Clone onto new names.
  async clone({ host, to }) {
    return withPanel(async (page) => {
      await page.goto(env.url + `#/hosts/${encodeURIComponent(host)}`);
      await page.locator("[data-test=services]").waitFor();
      const plugins = await page.locator("[data-test=services] tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-plugin")));
      await page.getByRole("button", { name: "Clone" }).click();
      const dlg = page.locator("dialog[open]");
      await dlg.getByLabel(/New host names/).fill(to.join(", "));
      await dlg.locator("[data-test=confirm]").click();
      await page.locator(".ok-box", { hasText: "Cloned onto" }).waitFor();
      await page.locator(".ok-box a", { hasText: to[0] }).click();
      await page.locator(".page-header h1", { hasText: to[0] }).waitFor();
      await page.locator("[data-test=services]").waitFor();
      const cloned = await page.locator("[data-test=services] tbody tr").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-plugin")));
      check(JSON.stringify(cloned) === JSON.stringify(plugins), `clone's services ${cloned} vs ${plugins}`);
      say(`${host} cloned onto ${to.join(", ")}: services ${cloned.join(", ")}`);
      return { plugins: cloned };
    });
  },

  // Host page: the service's credential profile changed to one with a wrong password; the
  // error shows on the page by itself (live), without a reload.
  async wrong_credential({ host, plugin, profile }) {
    return withPanel(async (page) => {
      await page.goto(env.url + `#/hosts/${encodeURIComponent(host)}`);
      const row = page.locator(`[data-test=services] tr[data-plugin="${plugin}"]`);
      await row.locator('.badge[data-status="ok"]').waitFor({ timeout: 60000 });
      await markNoReload(page);
      const t0 = Date.now();
      await row.getByRole("combobox").selectOption(profile);
      await page.locator(".toast.ok", { hasText: `credentials ${profile}` }).waitFor();
      await page.locator(`[data-test=services] tr[data-plugin="${plugin}"] .badge[data-status="error"]`).waitFor({ timeout: 30000 });
      const err = await waitFor(async () => (await page.locator(`[data-test=services] tr[data-plugin="${plugin}"] [data-test=service-error]`).textContent()).trim(), 10000, "the service's error text");
      const ms = Date.now() - t0;
      await checkNoReload(page);
      const live = await page.locator("[data-test=live]").textContent();
      check(live === "live", `the event stream is not up: "${live}"`);
      await shot(page, "host-wrong-credential");
      say(`${host}/${plugin}: error shown ${ms} ms after the change, without reload: "${err}"`);
      return { error: err, ms };
    });
  },

  // Add host: the probe ("Test connection") before saving; then the host's page.
  async add_host({ name, address, port }) {
    return withPanel(async (page) => {
      await page.goto(env.url + "#/add");
      await page.getByLabel("Name (the Zabbix host name)").fill(name);
      await page.getByLabel("Address").fill(address);
      const row = page.locator("form.add tbody tr").first();
      await row.getByLabel("plugin").selectOption("redis");
      await row.getByLabel("port").fill(String(port));
      await row.getByRole("button", { name: "Test connection" }).click();
      const result = row.locator("[data-test=probe-result]");
      await result.locator(".badge").waitFor({ timeout: 30000 });
      const text = (await result.textContent()).trim();
      check(await result.locator('.badge[data-status="ok"]').count() === 1, `probe: ${text}`);
      await page.getByRole("button", { name: "Save host" }).click();
      await page.locator(".page-header h1", { hasText: name }).waitFor();
      await page.locator(`[data-test=services] tr[data-plugin="redis"]`).waitFor();
      say(`probe before saving: "${text}"; ${name} saved with its redis service`);
      return { probe: text };
    });
  },

  // Audit page filtered on the user: each action done through the panel, with the user's name.
  async audit({ actions }) {
    return withPanel(async (page) => {
      await page.goto(env.url + `#/audit?actor=${encodeURIComponent(env.user)}`);
      await page.locator("[data-test=audit] tbody tr").first().waitFor();
      const rows = await page.locator("[data-test=audit] tbody tr").evaluateAll((trs) =>
        trs.map((tr) => ({ actor: tr.getAttribute("data-actor"), action: tr.getAttribute("data-action"), text: tr.textContent })));
      check(rows.every((r) => r.actor === env.user), `rows of other actors with the actor filter: ${JSON.stringify(rows.filter((r) => r.actor !== env.user))}`);
      const seen = new Set(rows.map((r) => r.action));
      const missing = actions.filter((a) => !seen.has(a));
      check(missing.length === 0, `not in the audit log as ${env.user}: ${missing.join(", ")} (seen: ${[...seen].join(", ")})`);
      await shot(page, "audit-filtered");
      say(`audit log as ${env.user}: ${rows.length} rows, actions ${[...seen].join(", ")}`);
      return { rows: rows.length, actions: [...seen] };
    });
  },

  // 5,000+ hosts: the total, only the visible rows in the DOM, the last host reached by
  // scrolling, a filter typed: all quick.
  async scale({ last, total_min, filtered }) {
    return withPanel(async (page) => {
      let t0 = Date.now();
      await page.goto(env.url + "#/hosts?q=load-");
      await page.locator(".hrow[data-host]").first().waitFor();
      const first_ms = Date.now() - t0;
      const total = Number((await page.locator("[data-test=total]").textContent()).split(" ")[0]);
      check(total >= total_min, `total ${total}`);
      const rows_in_dom = await page.locator(".hrow[data-host]").count();
      // Keyboard: "/" jumps to the search; a row's checkbox toggles with Space.
      await page.locator("main h1").click();
      await page.keyboard.press("/");
      check(await page.evaluate(() => document.activeElement && document.activeElement.getAttribute("name")) === "q", "'/' did not focus the search");
      await hostRow(page, "load-00002").getByRole("checkbox").focus();
      await page.keyboard.press("Space");
      check((await page.locator("[data-test=selected]").textContent()).startsWith("1 selected"), "Space did not select the row");
      check(await page.evaluate(() => document.activeElement && document.activeElement.getAttribute("aria-label")) === "select load-00002", "focus lost after selecting");
      await page.keyboard.press("Space");
      t0 = Date.now();
      await page.locator(".viewport").evaluate((el) => { el.scrollTop = el.scrollHeight; });
      await hostRow(page, last).waitFor();
      const last_ms = Date.now() - t0;
      t0 = Date.now();
      await page.getByLabel("search hosts").fill("load-0421");
      await page.locator("[data-test=total]", { hasText: /^10 hosts/ }).waitFor();
      const filter_ms = Date.now() - t0;
      // Filters on the server, completion as you type.
      await page.getByLabel("search hosts").fill("load-");
      await page.getByLabel("group").fill("load/");
      const options = await waitFor(async () => page.locator("datalist option").evaluateAll((os) => os.map((o) => o.value).filter((v) => v.startsWith("load/"))).then((v) => v.length ? v : null), 5000, "group suggestions");
      await page.getByLabel("group").fill("load/3");
      await page.getByLabel("status").selectOption("disabled");
      await page.locator("[data-test=total]", { hasText: new RegExp(`^${filtered} host`) }).waitFor();
      say(`group suggestions for "load/": ${options.slice(0, 5).join(", ")}…; status disabled + group load/3: ${filtered} hosts, as in the registry`);
      say(`${total} hosts: first rows in ${first_ms} ms, ${rows_in_dom} rows in the DOM, ${last} after scrolling to the end in ${last_ms} ms, a typed filter applied in ${filter_ms} ms (250 ms of it is the typing pause)`);
      return { total, first_ms, rows_in_dom, last_ms, filter_ms };
    });
  },

  // Data is text, never markup: an error message and a group full of HTML show as typed,
  // nothing runs, no element appears.
  async escaping({ host, payload }) {
    return withPanel(async (page) => {
      await page.goto(env.url + `#/hosts/${encodeURIComponent(host)}`);
      await page.locator("[data-test=errors]").waitFor();
      const shown = await page.locator("[data-test=errors]").textContent();
      check(shown.includes(payload), `the payload is not shown as text: ${shown.slice(0, 300)}`);
      await page.goto(env.url + `#/hosts?q=${encodeURIComponent(host)}`);
      await hostRow(page, host).waitFor();
      await page.goto(env.url + "#/audit");
      await page.locator("[data-test=audit]").waitFor();
      const injected = await page.evaluate(() => ({
        xss: window.__trapline_xss === 1,
        imgs: document.querySelectorAll("main img, main script, main iframe").length,
      }));
      check(!injected.xss && injected.imgs === 0, `markup from data became elements: ${JSON.stringify(injected)}`);
      say(`"${payload}" shown as text on the host page; no element made, nothing ran`);
      return injected;
    });
  },

  // A viewer sees the data but no button that would change it.
  async viewer({ user, password, host }) {
    const b = await launch(1280);
    try {
      await login(b.page, user, password);
      await b.page.locator(".hrow[data-host]").first().waitFor();
      check(await b.page.getByRole("toolbar", { name: "bulk actions" }).count() === 0, "bulk actions shown to a viewer");
      check(await b.page.getByRole("link", { name: "Add host" }).count() === 1, "nav link");  // the page explains itself
      await b.page.goto(env.url + `#/hosts/${encodeURIComponent(host)}`);
      await b.page.locator("[data-test=services]").waitFor();
      const buttons = await b.page.locator("main button").allTextContents();
      check(buttons.length === 0, `buttons shown to a viewer on a host page: ${buttons.join(", ")}`);
      await b.page.goto(env.url + "#/settings");
      await b.page.locator("[data-test=profiles]").waitFor();
      check(await b.page.locator("main button").count() === 0, "settings buttons shown to a viewer");
      check(b.problems.length === 0, b.problems.join("; "));
      say(`viewer ${user}: hosts, host and settings pages without a single write button`);
      return {};
    } finally {
      await b.browser.close();
    }
  },

  // Every page at 1280 and 1920 px, written to build/ui-screenshots/.
  async screenshots({ host }) {
    const files = [];
    for (const width of [1280, 1920]) {
      const b = await launch(width, width === 1280 ? 800 : 1080);
      try {
        await b.page.goto(env.url + "#/login");
        await b.page.getByLabel("User").waitFor();
        files.push(await shot(b.page, "login"));
        await login(b.page);
        const pages = [
          ["hosts", "#/hosts", ".hrow[data-host]"],
          ["host", `#/hosts/${encodeURIComponent(host)}`, "[data-test=services]"],
          ["discovery", "#/discovery", "main table, main .empty"],
          ["add-host", "#/add", "form.add tbody tr"],
          ["collectors", "#/collectors", "[data-test=collectors] svg.spark"],
          ["maintenance", "#/maintenance", "main table, main .empty"],
          ["audit", "#/audit", "[data-test=audit]"],
          ["settings", "#/settings", "[data-test=profiles]"],
        ];
        for (const [name, hash, ready] of pages) {
          await b.page.goto(env.url + hash);
          await b.page.locator(ready).first().waitFor();
          await b.page.waitForTimeout(300);  // fonts and the last fetches
          files.push(await shot(b.page, name));
        }
        check(b.problems.length === 0, b.problems.join("; "));
      } finally {
        await b.browser.close();
      }
    }
    say(`${files.length} screenshots in ${env.shots}`);
    return { files };
  },
};

main(scenarios);
