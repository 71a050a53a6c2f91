// Webhooks (admin): shown in the navigation only when GET /admin/webhooks answers. Endpoints and their
// recent deliveries, as the API returns them.
import { get } from "../api.js";
import { h, table, when } from "../dom.js";

export async function render() {
  const hooks = await get("/admin/webhooks");
  const list = hooks.data || [];
  const out = [h("h1", {}, "Webhooks"), table("Webhooks", [
    ["Id", (w) => w.id],
    ["URL", (w) => w.url],
    ["Events", (w) => (w.events || []).join(", ")],
    ["Enabled", (w) => (w.disabled ? "no" : "yes")],
  ], list, "No webhooks are configured.")];
  for (const w of list) {
    let deliveries = [];
    try {
      deliveries = (await get(`/admin/webhooks/${encodeURIComponent(w.id)}/deliveries`)).data || [];
    } catch {
      deliveries = [];
    }
    out.push(h("h2", {}, `Deliveries to ${w.url}`), table(`Deliveries of webhook ${w.id}`, [
      ["When", (d) => when(d.at || d.created_at)],
      ["Event", (d) => d.event],
      ["Status", (d) => d.status],
      ["Attempts", (d) => d.attempts, { num: true }],
      ["Error", (d) => d.error],
    ], deliveries, "No deliveries yet."));
  }
  return out;
}
