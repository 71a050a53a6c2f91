// Users (admin): create, edit role / team / limits / budget, delete; each user's spend this month.
import { api, describe, get, qs } from "../api.js";
import { clear, field, h, input, select, table, usd } from "../dom.js";
import { describeBudget, describeLimits, limitFields } from "../forms.js";

const ROLES = ["admin", "member", "viewer"];

async function spendByUser() {
  const now = new Date();
  const since = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
  try {
    const data = await get(`/admin/usage${qs({ group_by: "user", since })}`);
    return data.data;
  } catch {
    return [];
  }
}

export async function render(ctx) {
  const box = h("div", { role: "alert" });
  const fail = (e) => clear(box).append(h("p", { class: "alert" }, describe(e)));
  const act = async (fn) => {
    clear(box);
    try { await fn(); } catch (e) { fail(e); }
  };
  const [users, spend] = await Promise.all([get("/admin/users"), spendByUser()]);
  const spendOf = (u) => spend.filter((r) => [u.id, u.email].includes(r.user)).reduce((a, r) => a + r.cost_usd, 0);

  const email = input("email", { type: "email", required: true, size: 18 });
  const name = input("name", { type: "text", required: true, size: 14 });
  const team = input("team", { type: "text", size: 10 });
  const role = select("role", ROLES, "member");
  const password = input("password", { type: "password", autocomplete: "new-password", size: 12 });
  const lim = limitFields();
  const form = h("form", { class: "panel", "aria-label": "Create a user" }, h("h2", {}, "Create a user"),
    h("div", { class: "row" }, field("Email", email), field("Name", name), field("Team", team), field("Role", role),
      field("Password (optional)", password), lim.nodes),
    h("p", {}, h("button", { type: "submit" }, "Create user")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      const body = { email: email.value.trim(), name: name.value.trim(), role: role.value };
      if (team.value.trim()) body.team = team.value.trim();
      if (password.value) body.password = password.value;
      const { limits, budget } = lim.read();
      if (limits) body.limits = limits;
      if (budget) body.budget = budget;
      await api("POST", "/admin/users", body);
      password.value = "";
      await ctx.rerender();
    });
  });

  const editRow = (u, tr) => {
    const r = select("role", ROLES, u.role);
    const t = input("team", { type: "text", value: u.team || "", size: 10 });
    const f = limitFields(u);
    const edit = h("tr", { class: "edit" }, h("td", { colspan: 9 },
      h("form", { class: "row", "aria-label": `Edit ${u.email}` }, field("Role", r), field("Team", t), f.nodes,
        h("button", { type: "submit" }, "Save"), h("button", { type: "button", class: "secondary", onclick: () => edit.remove() }, "Cancel"))));
    edit.querySelector("form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      act(async () => {
        await api("PATCH", `/admin/users/${encodeURIComponent(u.id)}`, { role: r.value, team: t.value.trim() || null, ...f.read() });
        await ctx.rerender();
      });
    });
    tr.after(edit);
    r.focus();
  };
  const actions = (u) => (u.read_only ? h("span", { class: "muted" }, "from gateway.yaml") : h("div", { class: "actions" },
    h("button", { type: "button", class: "secondary", "aria-label": `Edit ${u.email}`, onclick: (ev) => editRow(u, ev.target.closest("tr")) }, "Edit"),
    h("button", { type: "button", class: "secondary", "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.email}`, onclick: () => act(async () => {
      await api("PATCH", `/admin/users/${encodeURIComponent(u.id)}`, { disabled: !u.disabled });
      await ctx.rerender();
    }) }, u.disabled ? "Enable" : "Disable"),
    h("button", { type: "button", class: "danger", "aria-label": `Delete ${u.email}`, onclick: () => act(async () => {
      if (!window.confirm(`Delete the user ${u.email}?`)) return;
      await api("DELETE", `/admin/users/${encodeURIComponent(u.id)}`);
      await ctx.rerender();
    }) }, "Delete")));

  return [h("h1", {}, "Users"), box, form, h("h2", {}, "All users"), table("Users", [
    ["Name", (u) => u.name],
    ["Email", (u) => u.email],
    ["Team", (u) => u.team],
    ["Role", (u) => u.role],
    ["Status", (u) => h("span", { class: `badge ${u.disabled ? "bad" : "ok"}` }, u.disabled ? "disabled" : "active")],
    ["Limits", describeLimits],
    ["Budget", (u) => describeBudget(u.budget)],
    ["Spend this month", (u) => usd(spendOf(u)), { num: true }],
    ["Actions", actions],
  ], users.data || [], "No users yet.")];
}
