// The console's shell: session, main navigation by role, and the views, routed on the URL fragment
// (#/overview?since=...). Each view module exports render(main, ctx).
import { api, describe, get, setCsrf, whenSignedOut } from "./api.js";
import { clear, h } from "./dom.js";
import * as signin from "./views/signin.js";

// The main navigation: accessible names are a public contract (tests, assistive technology).
const NAV = [
  { name: "Overview", path: "overview", roles: ["admin", "member", "viewer"] },
  { name: "Usage", path: "usage", roles: ["admin", "member", "viewer"] },
  { name: "Users", path: "users", roles: ["admin"] },
  { name: "Keys", path: "keys", roles: ["admin", "member"] },
  { name: "Budgets", path: "budgets", roles: ["admin"] },
  { name: "Audit", path: "audit", roles: ["admin"] },
  // shown only when the gateway has the webhooks API (probed at sign-in)
  { name: "Webhooks", path: "webhooks", roles: ["admin"], probe: "/admin/webhooks" },
  { name: "Playground", path: "playground", roles: ["admin", "member"] },
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const top = document.getElementById("top");
let session = null;
let allowed = [];

function route() {
  const raw = location.hash.startsWith("#/") ? location.hash.slice(2) : "";
  const [path, query] = raw.split("?");
  return { path: path || "overview", params: new URLSearchParams(query || "") };
}

export function go(path, params) {
  const q = params ? params.toString() : "";
  location.hash = `#/${path}${q ? `?${q}` : ""}`;
}

async function probe(item) {
  if (!item.probe) return true;
  try {
    await get(item.probe, { quiet401: true });
    return true;
  } catch (e) {
    return e.status !== 404 && e.status !== 405 && e.status !== undefined;
  }
}

async function started(s) {
  session = s;
  setCsrf(s.csrf_token);
  const role = s.user.role;
  const mine = NAV.filter((i) => i.roles.includes(role));
  // links behind a probe appear once the API answers; the first view does not wait for the probes
  const shownItems = new Set(mine.filter((i) => !i.probe));
  const draw = () => {
    const visible = mine.filter((i) => shownItems.has(i));
    allowed = visible.map((i) => i.path);
    clear(nav).append(...visible.map((i) => h("li", {}, h("a", { href: `#/${i.path}`, "data-path": i.path }, i.name))));
    markCurrent();
  };
  draw();
  for (const item of mine.filter((i) => i.probe)) {
    probe(item).then((ok) => {
      if (ok && session === s) {
        shownItems.add(item);
        draw();
        if (route().path === item.path) show();
      }
    });
  }
  clear(document.getElementById("who")).append(`${s.user.name || s.user.email || s.user.id} (${role})`);
  top.hidden = false;
  await show();
}

function signedOut(message) {
  session = null;
  setCsrf(null);
  top.hidden = true;
  clear(nav);
  signin.render(main, { onSignedIn: started, message });
}

function markCurrent() {
  const { path } = route();
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.path === path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

let shown = 0; // the latest navigation: a slower, older view must not replace a newer one

async function show() {
  if (!session) return;
  const mine = ++shown;
  const { path, params } = route();
  markCurrent();
  clear(main);
  const item = NAV.find((i) => i.path === path);
  if (!item) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "There is no such view."));
    return;
  }
  document.title = `${item.name} · llm-gateway console`;
  if (!allowed.includes(path)) {
    main.append(h("h1", {}, item.name), h("p", { class: "alert", role: "alert" },
      `Not allowed: the ${item.name} view needs a role your account (${session.user.role}) does not have.`));
    return;
  }
  main.append(h("p", { class: "muted" }, "Loading…"));
  try {
    const view = await import(`./views/${path}.js`);
    const ctx = { user: session.user, role: session.user.role, params, go, rerender: show };
    const content = await view.render(ctx);
    if (mine !== shown) return;
    clear(main).append(...content.filter(Boolean));
  } catch (e) {
    if (mine !== shown) return;
    clear(main).append(h("h1", {}, item.name), h("p", { class: "alert", role: "alert" }, describe(e)));
  }
  if (mine === shown) main.focus({ preventScroll: true });
}

document.getElementById("signout").addEventListener("click", async () => {
  try { await api("DELETE", "/ui/api/session", undefined, { quiet401: true }); } catch { /* already gone */ }
  location.hash = "";
  signedOut("You are signed out.");
});

whenSignedOut(() => signedOut("Your session has ended. Sign in again."));
window.addEventListener("hashchange", show);

try {
  await started(await get("/ui/api/session", { quiet401: true }));
} catch {
  signedOut(null);
}
