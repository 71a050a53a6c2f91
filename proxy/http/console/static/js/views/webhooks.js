// Webhooks (admin): subscriptions and their recent deliveries, as GET /admin/webhooks and
// GET /admin/webhooks/{id}/deliveries return them (docs/webhooks.md).
import { get } from "../api.js";
import { h, table, when } from "../dom.js";

export async function render() {
  const hooks = await get("/admin/webhooks");
  const list = hooks.data || [];
  const out = [h("h1", {}, "Webhooks"), table("Webhooks", [
    ["Id", (w) => w.id],
    ["URL", (w) => w.url],
    ["Events", (w) => (w.events || []).join(", ")],
    ["Active", (w) => (w.active ? "yes" : "no")],
    ["Description", (w) => w.description || ""],
  ], list, "No webhooks are configured.")];
  for (const w of list) {
    let deliveries = [];
    try {
      deliveries = (await get(`/admin/webhooks/${encodeURIComponent(w.id)}/deliveries`)).data || [];
    } catch {
      deliveries = [];
    }
    out.push(h("h2", {}, `Deliveries to ${w.url}`), table(`Deliveries of webhook ${w.id}`, [
      ["When", (d) => when(d.created_at)],
      ["Event", (d) => d.event_type],
      ["Status", (d) => d.status],
      ["Attempts", (d) => d.attempts, { num: true }],
      ["Last response", (d) => (d.last_status == null ? "" : String(d.last_status))],
      ["Next attempt", (d) => (d.next_attempt_at ? when(d.next_attempt_at) : "")],
      ["Error", (d) => d.last_error || ""],
    ], deliveries, "No deliveries yet."));
  }
  return out;
}
