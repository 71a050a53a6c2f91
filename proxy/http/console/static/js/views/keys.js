// Keys. Admin: every key (create, rotate, disable/enable, edit limits and budget, last use). Member: their own
// keys (GET/POST /ui/api/me/keys). Secrets appear once, right after create or rotate, and are never stored.
import { api, describe, get, qs } from "../api.js";
import { clear, field, h, input, table, when } from "../dom.js";
import { describeBudget, describeLimits, limitFields, secretPanel } from "../forms.js";

const status = (k) => h("span", { class: `badge ${k.disabled ? "bad" : "ok"}` }, k.disabled ? "disabled" : "active");

function alertBox() {
  return h("div", { role: "alert" });
}

function fail(box, e) {
  clear(box).append(h("p", { class: "alert" }, describe(e)));
}

async function lastUse() {
  // the newest call per key over the last 90 days (the usage API's group rows carry last_call_at)
  const since = new Date(Date.now() - 90 * 86400000).toISOString();
  try {
    const data = await get(`/admin/usage${qs({ group_by: "key", since })}`);
    return new Map(data.data.map((r) => [r.key_id, r.last_call_at]));
  } catch {
    return new Map();
  }
}

function createForm(fields, onCreate, box) {
  const name = input("name", { type: "text", required: true, size: 16 });
  const form = h("form", { class: "panel", "aria-label": "Create a key" }, h("h2", {}, "Create a key"),
    h("div", { class: "row" }, field("Key name", name), fields.nodes || []),
    h("p", {}, h("button", { type: "submit" }, "Create key")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear(box);
    try {
      await onCreate({ name: name.value.trim(), ...(fields.read ? fields.read() : {}) });
      name.value = "";
    } catch (e) {
      fail(box, e);
    }
  });
  return form;
}

async function adminKeys(ctx) {
  const holder = h("div", {});
  const box = alertBox();
  const [keys, used, users] = await Promise.all([get("/admin/keys"), lastUse(),
    get("/admin/users").then((u) => u.data).catch(() => [])]);
  const userName = new Map(users.map((u) => [u.id, u.email || u.name]));
  const userSel = h("select", { name: "user_id" }, h("option", { value: "" }, "(no user)"),
    users.map((u) => h("option", { value: u.id }, `${u.name || u.email} <${u.email}>`)));
  const team = input("team", { type: "text", size: 10 });
  const models = input("models", { type: "text", value: "*", size: 10 });
  const lim = limitFields();
  const fields = {
    nodes: [users.length ? field("User", userSel) : null, field("Team", team), field("Models", models), lim.nodes],
    read: () => {
      const { limits, budget } = lim.read();
      const body = { models: models.value.split(",").map((m) => m.trim()).filter(Boolean) };
      if (userSel.value) body.user_id = userSel.value;
      if (team.value.trim()) body.team = team.value.trim();
      if (limits) body.limits = limits;
      if (budget) body.budget = budget;
      return body;
    },
  };
  const create = createForm(fields, async (body) => {
    const made = await api("POST", "/admin/keys", body);
    await ctx.rerender();
    secretPanel(document.getElementById("main"), `Key “${made.name}” created`, made.key);
  }, box);

  const act = async (fn) => {
    clear(box);
    try { await fn(); } catch (e) { fail(box, e); }
  };
  const rows = keys.data;
  const editRow = (k, tr) => {
    const f = limitFields(k);
    const cells = h("td", { colspan: 9 }, h("form", { class: "row", "aria-label": `Edit limits of ${k.name}` }, f.nodes,
      h("button", { type: "submit" }, "Save"), h("button", { type: "button", class: "secondary", onclick: () => edit.remove() }, "Cancel")));
    const edit = h("tr", { class: "edit" }, cells);
    cells.querySelector("form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      act(async () => { await api("PATCH", `/admin/keys/${encodeURIComponent(k.id)}`, f.read()); await ctx.rerender(); });
    });
    tr.after(edit);
    edit.querySelector("input").focus();
  };
  const actions = (k) => {
    if (k.read_only) return h("span", { class: "muted" }, "from gateway.yaml");
    const wrap = h("div", { class: "actions" });
    wrap.append(
      h("button", { type: "button", class: "secondary", "aria-label": `Edit limits of ${k.name}`, onclick: (ev) => editRow(k, ev.target.closest("tr")) }, "Edit limits"),
      h("button", { type: "button", class: "secondary", "aria-label": `Rotate ${k.name}`, onclick: () => act(async () => {
        const r = await api("POST", `/admin/keys/${encodeURIComponent(k.id)}/rotate`, {});
        await ctx.rerender();
        secretPanel(document.getElementById("main"), `New secret for “${r.name}”`, r.key);
      }) }, "Rotate"),
      h("button", { type: "button", class: "danger", "aria-label": `${k.disabled ? "Enable" : "Disable"} ${k.name}`, onclick: () => act(async () => {
        await api("PATCH", `/admin/keys/${encodeURIComponent(k.id)}`, { disabled: !k.disabled });
        await ctx.rerender();
      }) }, k.disabled ? "Enable" : "Disable"));
    return wrap;
  };
  holder.append(table("Keys", [
    ["Name", (k) => k.name],
    ["User", (k) => userName.get(k.user_id) || k.user],
    ["Team", (k) => k.team],
    ["Models", (k) => (k.models || []).join(", ")],
    ["Limits", describeLimits],
    ["Budget", (k) => describeBudget(k.budget)],
    ["Status", status],
    ["Last use", (k) => (used.get(k.id) ? when(used.get(k.id)) : "never")],
    ["Actions", actions],
  ], rows, "No keys yet."));
  return [h("h1", {}, "Keys"), box, create, h("h2", {}, "All keys"), holder];
}

async function myKeys(ctx) {
  const box = alertBox();
  const mine = await get("/ui/api/me/keys");
  const create = createForm({}, async (body) => {
    const made = await api("POST", "/ui/api/me/keys", body);
    await ctx.rerender();
    secretPanel(document.getElementById("main"), `Key “${made.name}” created`, made.key);
  }, box);
  return [h("h1", {}, "Keys"), box, create, h("h2", {}, "My keys"), table("My keys", [
    ["Name", (k) => k.name],
    ["Models", (k) => (k.models || []).join(", ")],
    ["Limits", describeLimits],
    ["Budget", (k) => describeBudget(k.budget)],
    ["Status", status],
    ["Created", (k) => when(k.created_at)],
  ], mine.data || [], "You have no keys yet.")];
}

export async function render(ctx) {
  return ctx.role === "admin" ? adminKeys(ctx) : myKeys(ctx);
}
