// A signed-in user's own usage (GET /ui/api/me/usage): calls, tokens, spend, budget and recent calls.
import { budgetMeter, day, h, ms, num, pct, table, tokens, usd, when } from "../dom.js";

export function budgetOf(me) {
  const b = me.budget || null;
  if (!b) return null;
  const used = me.budget_used_fraction ?? b.used_fraction ?? (b.usd ? (b.spend_usd || 0) / b.usd : null);
  return { used, usd: b.usd, period: b.period, resets: me.resets_on || b.resets_on || b.period_end, scope: b.scope };
}

export function recentTable(rows, caption = "My recent calls") {
  return table(caption, [
    ["Time", (r) => when(r.created_at)],
    ["Alias", (r) => r.alias],
    ["Tokens", (r) => num(tokens(r)), { num: true }],
    ["Cost", (r) => usd(r.cost_usd), { num: true }],
    ["Status", (r) => h("span", { class: `badge ${r.status < 400 ? "ok" : "bad"}` }, String(r.status))],
    ["Latency", (r) => ms(r.latency_ms), { num: true }],
    ["Cache", (r) => (r.cache_hit ? "hit" : "miss")],
  ], rows || [], "No calls yet in this period.");
}

export function mySummary(me, cards) {
  const u = me.usage || {};
  const b = budgetOf(me);
  const items = [["My calls", num(u.calls)], ["My tokens", num(tokens(u))], ["My spend", usd(me.spend_usd ?? u.cost_usd)]];
  if (b) items.push(["My budget used", pct(b.used)], ["Budget resets on", day(b.resets)]);
  const out = [
    h("p", { class: "muted" }, `Since ${when(me.since)}.`),
    cards(items),
  ];
  if (b) {
    out.push(h("section", { class: "panel", "aria-label": "My budget" },
      h("h2", {}, "My budget"),
      h("p", {}, `${usd(b.usd)} per ${b.period === "daily" ? "day" : b.period === "weekly" ? "week" : "month"}: `,
        budgetMeter(b.used, "Budget used"), `; resets on ${day(b.resets)}.`)));
  } else {
    out.push(h("p", { class: "muted" }, "No budget applies to you."));
  }
  out.push(h("h2", {}, "My recent calls"), recentTable(me.recent));
  return out;
}
