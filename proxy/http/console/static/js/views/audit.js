// Audit (admin): who did what, when, from which IP, with the before/after of each change (as text).
import { get, qs } from "../api.js";
import { field, h, input, table, when } from "../dom.js";

const brief = (v) => (v === null || v === undefined ? "" : JSON.stringify(v).slice(0, 300));

export async function render(ctx) {
  const action = ctx.params.get("action") || "";
  const target = ctx.params.get("target") || "";
  const data = await get(`/admin/audit${qs({ limit: 200, action, target })}`);
  const a = input("action", { type: "text", value: action, size: 14 });
  const t = input("target", { type: "text", value: target, size: 14 });
  const form = h("form", { class: "panel row", "aria-label": "Audit filters" }, field("Action", a), field("Target", t),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (a.value.trim()) p.set("action", a.value.trim());
    if (t.value.trim()) p.set("target", t.value.trim());
    ctx.go("audit", p);
  });
  return [h("h1", {}, "Audit"), form, table("Audit log, newest first", [
    ["When", (r) => when(r.at)],
    ["Actor", (r) => r.actor],
    ["Action", (r) => r.action],
    ["Target", (r) => r.target],
    ["IP", (r) => r.ip],
    ["Before", (r) => brief(r.before)],
    ["After", (r) => brief(r.after)],
  ], data.data || [], "No audit entries match.")];
}
