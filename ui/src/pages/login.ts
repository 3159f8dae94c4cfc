import { api, Session, setSession } from "../api";
import { h, mount } from "../dom";
import { busy, field } from "../ui";

export function loginPage(root: HTMLElement, _p: string[], query: URLSearchParams): void {
  const user = h("input", { name: "user", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { class: "primary", type: "submit" }, "Log in");
  const box = h("div", { "data-test": "login-error" });
  const form = h("form", { class: "login", "aria-label": "log in" },
    h("h1", null, "trapline"),
    h("p", { class: "muted" }, "Admin panel"),
    field("User", user),
    field("Password", password),
    box,
    submit);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void busy(submit, async () => {
      const s = await api<Session>("POST", "/api/v1/session", { user: user.value, password: password.value });
      setSession(s);
      password.value = "";
      const next = query.get("next");
      location.hash = `#${next && next.startsWith("/") && next !== "/login" ? next : "/hosts"}`;
    }, box);
  });
  mount(root, h("div", { class: "login-wrap" }, form));
  user.focus();
}
