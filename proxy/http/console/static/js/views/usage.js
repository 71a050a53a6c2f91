// Usage. Admin: /admin/usage rows for the filters and a grouping, and a CSV export of exactly those rows
// (the same query with format=csv). Others: their own usage and recent calls for a date range.
import { get, qs } from "../api.js";
import { h, ms, num, pct, select, table, tokens, usd } from "../dom.js";
import { apiQuery, filterForm, range } from "../filters.js";
import { recentTable } from "./mine.js";

const GROUPS = [["", "No grouping (totals)"], ["day", "Day"], ["user", "User"], ["key", "Key"], ["team", "Team"],
  ["provider", "Provider"], ["alias", "Alias"], ["model", "Model"]];

async function adminUsage(ctx) {
  const groupBy = ctx.params.get("group_by") || "day";
  const q = { ...apiQuery(ctx.params), group_by: groupBy || undefined };
  const data = await get(`/admin/usage${qs(q)}`);
  const rows = groupBy ? data.data : [{ ...data.totals, scope: "total" }];
  const label = GROUPS.find(([v]) => v === groupBy)?.[1] || groupBy;
  const first = groupBy === "key" ? [["Key", (r) => r.key], ["Key id", (r) => r.key_id]]
    : groupBy === "user" ? [["User", (r) => r.user], ["Email", (r) => r.user_email]]
      : [[groupBy ? label : "Scope", (r) => String(r[groupBy || "scope"] ?? "—")]];
  const groupSel = select("group_by", GROUPS, groupBy);
  const csvHref = `/admin/usage${qs({ ...q, format: "csv" })}`;
  return [
    h("h1", {}, "Usage"),
    filterForm(ctx.params, (p) => ctx.go("usage", p), [["Group by", groupSel]]),
    h("p", { class: "row" },
      h("a", { class: "button secondary", href: csvHref, download: "usage.csv" }, "Export CSV"),
      h("span", { class: "muted" }, `The CSV holds exactly the ${rows.length} row(s) below.`)),
    table(`Usage by ${label.toLowerCase()}`, [
      ...first,
      ["Calls", (r) => num(r.calls), { num: true }],
      ["Tokens", (r) => num(tokens(r)), { num: true }],
      ["Cost", (r) => usd(r.cost_usd), { num: true }],
      ["Errors", (r) => num(r.errors), { num: true }],
      ["Error rate", (r) => pct(r.error_rate), { num: true }],
      ["p50", (r) => ms(r.latency_p50_ms), { num: true }],
      ["p95", (r) => ms(r.latency_p95_ms), { num: true }],
      ["Cache hits", (r) => num(r.cache_hits), { num: true }],
    ], rows),
  ];
}

async function myUsage(ctx) {
  const { since, until } = apiQuery(ctx.params);
  const me = await get(`/ui/api/me/usage${qs({ since, until })}`);
  const u = me.usage || {};
  const { from, to } = range(ctx.params);
  return [
    h("h1", {}, "Usage"),
    filterForm(new URLSearchParams({ from, to }), (p) => ctx.go("usage", p), [], true),
    table("My usage for this range", [["Calls", (r) => num(r.calls), { num: true }], ["Tokens", (r) => num(tokens(r)), { num: true }],
      ["Spend", (r) => usd(r.cost_usd), { num: true }], ["Errors", (r) => num(r.errors), { num: true }], ["Cache hits", (r) => num(r.cache_hits), { num: true }]], [u]),
    h("h2", {}, "My recent calls"),
    recentTable(me.recent),
  ];
}

export async function render(ctx) {
  return ctx.role === "admin" ? adminUsage(ctx) : myUsage(ctx);
}
