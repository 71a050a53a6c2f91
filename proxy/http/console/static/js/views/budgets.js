// Budgets (admin): every budget with its spend, % used, reset date and this period's threshold alerts.
import { get } from "../api.js";
import { budgetMeter, day, h, pct, table, usd, when } from "../dom.js";

export async function render() {
  const data = await get("/admin/budgets");
  return [h("h1", {}, "Budgets"), table("Budgets", [
    ["Scope", (b) => b.scope],
    ["Name", (b) => b.name],
    ["Budget", (b) => `${usd(b.usd)} ${b.period}`],
    ["Spend", (b) => usd(b.spend_usd), { num: true }],
    ["Used", (b) => budgetMeter(b.used_fraction, `Budget used by ${b.scope} ${b.name}`)],
    ["Remaining", (b) => usd(b.remaining_usd), { num: true }],
    ["Resets on", (b) => day(b.period_end)],
    ["Alerts this period", (b) => (b.alerts || []).map((a) => `${pct(a.threshold)} at ${when(a.at)}`).join("; ") || "none"],
  ], data.data || [], "No budgets are set.")];
}
