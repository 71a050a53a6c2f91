// Sign in with email + password, or with an API key / admin key. The key goes to the gateway once, in the
// body of POST /ui/api/session; the browser then holds only the HttpOnly session cookie.
import { api, describe } from "../api.js";
import { clear, field, h, input } from "../dom.js";

export function render(main, { onSignedIn, message }) {
  const status = h("div", { role: "status", "aria-live": "polite" });
  const alert = h("div", { role: "alert" });
  if (message) status.append(h("p", { class: "note" }, message));
  const email = input("email", { type: "email", autocomplete: "username" });
  const password = input("password", { type: "password", autocomplete: "current-password" });
  const apiKey = input("api_key", { type: "password", autocomplete: "off", spellcheck: "false" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "panel", novalidate: true },
    h("fieldset", {}, h("legend", {}, "With your email and password"), field("Email", email), field("Password", password)),
    h("fieldset", {}, h("legend", {}, "Or with an API key"), field("API key", apiKey),
      h("p", { class: "muted" }, "A key of yours or the admin key. It is not stored in the browser.")),
    button);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear(alert);
    const key = apiKey.value.trim();
    let body;
    if (key) body = { api_key: key };
    else if (email.value.trim() && password.value) body = { email: email.value.trim(), password: password.value };
    else {
      alert.append(h("p", { class: "alert" }, "Enter your email and password, or an API key."));
      return;
    }
    button.disabled = true;
    try {
      const s = await api("POST", "/ui/api/session", body, { quiet401: true });
      apiKey.value = "";
      password.value = "";
      await onSignedIn(s);
    } catch (e) {
      const text = e.status === 401 ? "Sign-in failed: wrong email, password or key." : describe(e);
      alert.append(h("p", { class: "alert" }, text));
      button.disabled = false;
    }
  });
  clear(main).append(h("div", { class: "signin" }, h("h1", {}, "Sign in to the gateway console"), status, alert, form));
  document.title = "Sign in · llm-gateway console";
}
