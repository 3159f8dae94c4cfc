// Settings: credential profiles (secrets write-only: the API says only whether one is set),
// the Zabbix connection (read-only: it comes from the coordinators' config), users (admins).

import { api, credentialProfiles, CredentialProfile, currentSession, enc, isAdmin, listOf, User, zabbix } from "../api";
import { ago, h, mount } from "../dom";
import { busy, confirmDialog, errorText, field, formDialog, pageHeader, toast } from "../ui";

const kSecretKeys: Record<string, string[]> = { ssh: ["password", "private_key", "passphrase"], postgresql: ["password"], redis: ["password"] };

export function settingsPage(root: HTMLElement): () => void {
  let gen = 0;
  const zbx = h("div");
  const profiles = h("div");
  const users = h("div");
  const box = h("div");
  mount(root, pageHeader("Settings"), box,
    h("section", null, h("h2", null, "Credential profiles"), profiles),
    h("section", null, h("h2", null, "Zabbix connection"), zbx),
    h("section", null, h("h2", null, "Users"), users));

  async function loadZabbix(): Promise<void> {
    const z = await zabbix();
    mount(zbx, z ? h("dl", { class: "facts", "data-test": "zabbix" },
      h("dt", null, "API URL"), h("dd", { class: "mono" }, z.url || "— (no [zabbix] section: no sync)"),
      h("dt", null, "User"), h("dd", null, z.user || "—"),
      h("dt", null, "Frontend URL"), h("dd", { class: "mono" }, z.frontend_url || "— ([zabbix] frontend_url unset: no dashboard links)"),
      h("dt", null, "Host group"), h("dd", null, z.host_group || "—"),
      h("dt", null, ""), h("dd", { class: "muted" }, "Set in the coordinators' configuration ([zabbix]); secrets stay in their files."))
      : h("p", { class: "muted" }, "The coordinator did not say (GET /api/v1/settings/zabbix failed)."));
  }

  async function loadProfiles(): Promise<void> {
    const g = gen;
    let list: CredentialProfile[];
    try {
      list = await credentialProfiles();
    } catch (e) {
      mount(profiles, h("div", { class: "error-box" }, errorText(e)));
      return;
    }
    if (g !== gen) return;
    const admin = isAdmin();
    mount(profiles,
      list.length === 0 ? h("p", { class: "muted" }, "None yet.") :
        h("table", { class: "grid", "data-test": "profiles" },
          h("thead", null, h("tr", null, ...["Name", "Kind", "User", "Secret", "Discovery uses it for", "Options", ""].map((c) => h("th", null, c)))),
          h("tbody", null, ...list.map((p) => h("tr", { "data-profile": p.name },
            h("td", null, p.name), h("td", null, p.kind), h("td", null, p.username || "—"),
            h("td", null, p.has_secret ? "set (write-only)" : "none"),
            h("td", null, [p.is_default ? `every ${p.kind} service (default)` : "", p.host_groups?.length ? `groups: ${p.host_groups.join(", ")}` : ""].filter(Boolean).join("; ") || "—"),
            h("td", { class: "mono" }, p.options && Object.keys(p.options).length ? JSON.stringify(p.options) : ""),
            h("td", null, admin ? [editProfileButton(p), " ", deleteProfileButton(p)] : null))))),
      admin ? newProfileForm() : h("p", { class: "muted" }, "Only admins change credential profiles."));
  }

  function secretInputs(kind: string): HTMLElement[] {
    return (kSecretKeys[kind] ?? ["password"]).map((k) =>
      k === "private_key"
        ? field("private key (PEM)", h("textarea", { name: `secret.${k}`, rows: 3, autocomplete: "off", spellcheck: "false" }))
        : field(k, h("input", { type: "password", name: `secret.${k}`, autocomplete: "new-password" })));
  }
  function collectSecret(form: HTMLElement): Record<string, string> | undefined {
    const s: Record<string, string> = {};
    for (const el of form.querySelectorAll<HTMLInputElement | HTMLTextAreaElement>("[name^='secret.']")) {
      if (el.value) s[el.name.slice(7)] = el.value;
    }
    return Object.keys(s).length ? s : undefined;
  }
  function parseOptions(text: string): Record<string, unknown> | undefined {
    if (!text.trim()) return undefined;
    const v = JSON.parse(text) as unknown;
    if (!v || typeof v !== "object" || Array.isArray(v)) throw new Error("options must be a JSON object, like {\"interval\": 10}");
    return v as Record<string, unknown>;
  }

  function newProfileForm(): HTMLElement {
    const name = h("input", { name: "name", required: true, maxlength: 128 });
    const kind = h("select", { name: "kind" }, ...["ssh", "postgresql", "redis"].map((k) => h("option", { value: k }, k)));
    const username = h("input", { name: "username", autocomplete: "off" });
    const secrets = h("div", { class: "row" }, ...secretInputs("ssh"));
    kind.addEventListener("change", () => mount(secrets, ...secretInputs(kind.value)));
    const options = h("input", { name: "options", placeholder: "{\"interval\": 10}", size: 30 });
    const groups = h("input", { name: "host_groups", placeholder: "production, db servers", size: 24 });
    const isDefault = h("input", { type: "checkbox", name: "is_default" });
    const save = h("button", { type: "submit", class: "primary" }, "Create profile");
    const err = h("div");
    const form = h("form", { class: "card", "aria-label": "new credential profile" },
      h("h3", null, "New profile"),
      h("div", { class: "row" }, field("Name", name), field("Kind", kind), field("User name", username), field("Options (JSON)", options)),
      secrets,
      h("div", { class: "row" }, field("Discovery: hosts in groups (comma separated)", groups),
        h("label", { class: "check" }, isDefault, " Default of its kind for discovered services")),
      err, save);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(save, async () => {
        const body: Record<string, unknown> = { name: name.value.trim(), kind: kind.value, username: username.value };
        const secret = collectSecret(form);
        if (secret) body.secret = secret;
        const o = parseOptions(options.value);
        if (o) body.options = o;
        const g = groups.value.split(",").map((x) => x.trim()).filter(Boolean);
        if (g.length) body.host_groups = g;
        if (isDefault.checked) body.is_default = true;
        await api("POST", "/api/v1/credential-profiles", body);
        for (const el of form.querySelectorAll<HTMLInputElement>("[name^='secret.']")) el.value = "";
        toast(`profile ${name.value.trim()} created`, "ok");
        await loadProfiles();
      }, err);
    });
    return form;
  }

  function editProfileButton(p: CredentialProfile): HTMLElement {
    const b = h("button", { type: "button", "data-action": "edit profile" }, "Edit");
    b.addEventListener("click", () => void (async () => {
      const username = h("input", { name: "username", value: p.username });
      const pw = h("input", { type: "password", name: "password", autocomplete: "new-password", placeholder: p.has_secret ? "unchanged" : "" });
      const groups = h("input", { name: "host_groups", value: (p.host_groups ?? []).join(", ") });
      const def = h("select", { name: "is_default" }, h("option", { value: "false" }, "no"), h("option", { value: "true" }, "yes"));
      def.value = p.is_default ? "true" : "false";
      const v = await formDialog({ title: `Edit profile ${p.name}`, body: ["A new password replaces the whole secret; leave it empty to keep the current one."],
        controls: [["User name", username], ["New password", pw], ["Discovery: hosts in groups (comma separated)", groups], [`Default for discovered ${p.kind} services`, def]], confirm: "Save" });
      if (!v) return;
      const body: Record<string, unknown> = { username: v.username,
        host_groups: v.host_groups.split(",").map((x) => x.trim()).filter(Boolean), is_default: v.is_default === "true" };
      if (v.password) body.secret = { password: v.password };
      await busy(b, async () => {
        await api("PATCH", `/api/v1/credential-profiles/${enc(p.name)}`, body);
        toast(`profile ${p.name} saved`, "ok");
        await loadProfiles();
      }, box);
    })());
    return b;
  }
  function deleteProfileButton(p: CredentialProfile): HTMLElement {
    const b = h("button", { type: "button", class: "danger", "data-action": "delete profile" }, "Delete");
    b.addEventListener("click", () => void (async () => {
      if (!await confirmDialog({ title: `Delete profile ${p.name}?`, body: ["Services using it lose their credentials."], confirm: "Delete", danger: true })) return;
      await busy(b, async () => {
        await api("DELETE", `/api/v1/credential-profiles/${enc(p.name)}`);
        await loadProfiles();
      }, box);
    })());
    return b;
  }

  async function loadUsers(): Promise<void> {
    if (!isAdmin()) {
      mount(users, h("p", { class: "muted" }, `You are ${currentSession()?.user} (${currentSession()?.role}); admins manage users.`));
      return;
    }
    let list: (User & { last_login?: string | null })[];
    try {
      list = listOf(await api("GET", "/api/v1/users"), "users");
    } catch (e) {
      mount(users, h("div", { class: "error-box" }, errorText(e)));
      return;
    }
    const me = currentSession()?.user;
    mount(users,
      h("table", { class: "grid", "data-test": "users" },
        h("thead", null, h("tr", null, ...["Name", "Role", "State", "Last login", ""].map((c) => h("th", null, c)))),
        h("tbody", null, ...list.map((u) => {
          const role = h("select", { "aria-label": `role of ${u.name}` }, ...["viewer", "operator", "admin"].map((r) => h("option", { value: r }, r)));
          role.value = u.role;
          role.addEventListener("change", () => void busy(null, async () => {
            try {
              await api("PATCH", `/api/v1/users/${enc(u.name)}`, { role: role.value });
              toast(`${u.name}: ${role.value}`, "ok");
            } finally {
              await loadUsers();
            }
          }, box));
          const dis = h("button", { type: "button" }, u.disabled ? "Enable" : "Disable");
          dis.addEventListener("click", () => void busy(dis, async () => {
            await api("PATCH", `/api/v1/users/${enc(u.name)}`, { disabled: !u.disabled });
            await loadUsers();
          }, box));
          const pw = h("button", { type: "button" }, "Set password");
          pw.addEventListener("click", () => void (async () => {
            const input = h("input", { type: "password", name: "password", autocomplete: "new-password", required: true, minlength: 8 });
            const v = await formDialog({ title: `New password for ${u.name}`, controls: [["Password", input]], confirm: "Set" });
            if (v) await busy(pw, async () => { await api("PATCH", `/api/v1/users/${enc(u.name)}`, { password: v.password }); toast("password set", "ok"); }, box);
          })());
          const del = h("button", { type: "button", class: "danger" }, "Delete");
          del.disabled = u.name === me;
          del.addEventListener("click", () => void (async () => {
            if (!await confirmDialog({ title: `Delete user ${u.name}?`, body: ["Their sessions end at once."], confirm: "Delete", danger: true })) return;
            await busy(del, async () => { await api("DELETE", `/api/v1/users/${enc(u.name)}`); await loadUsers(); }, box);
          })());
          return h("tr", { "data-user": u.name },
            h("td", null, u.name), h("td", null, role), h("td", null, u.disabled ? "disabled" : "active"),
            h("td", null, u.last_login ? ago(u.last_login) : "never"), h("td", null, dis, " ", pw, " ", del));
        }))),
      newUserForm());
  }
  function newUserForm(): HTMLElement {
    const name = h("input", { name: "name", required: true, maxlength: 64, autocomplete: "off" });
    const role = h("select", { name: "role" }, ...["viewer", "operator", "admin"].map((r) => h("option", { value: r }, r)));
    const pw = h("input", { type: "password", name: "password", required: true, autocomplete: "new-password" });
    const save = h("button", { type: "submit", class: "primary" }, "Add user");
    const err = h("div");
    const form = h("form", { class: "card", "aria-label": "new user" }, h("h3", null, "New user"),
      h("div", { class: "row" }, field("Name", name), field("Role", role), field("Password", pw)), err, save);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(save, async () => {
        await api("POST", "/api/v1/users", { name: name.value.trim(), role: role.value, password: pw.value });
        pw.value = "";
        toast(`user ${name.value.trim()} added`, "ok");
        name.value = "";
        await loadUsers();
      }, err);
    });
    return form;
  }

  void loadZabbix();
  void loadProfiles();
  void loadUsers();
  return () => {
    gen++;
  };
}
