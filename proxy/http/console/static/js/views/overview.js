// Overview. Admin: totals for the chosen range and filters, four charts (provider share, cost per day,
// latency by provider, success rate) each with a table, and provider health. Others: their own summary.
import { get, qs } from "../api.js";
import { bars, gauge, line, pie } from "../charts.js";
import { budgetMeter, compact, day, h, ms, num, pct, table, tokens, usd } from "../dom.js";
import { apiQuery, filterForm, range } from "../filters.js";
import { mySummary } from "./mine.js";

function cards(items) {
  return h("div", { class: "cards" }, items.map(([k, v]) => h("div", { class: "card" }, h("div", { class: "k" }, k), h("div", { class: "v" }, v))));
}

async function health() {
  let data;
  try {
    // 503 means every provider is down: still a report to show
    const r = await fetch("/health/providers", { headers: { Accept: "application/json" }, cache: "no-store" });
    data = await r.json();
  } catch (e) {
    return [h("p", { class: "alert" }, `Provider health is not available (${e.message}).`)];
  }
  const rows = [];
  for (const [name, p] of Object.entries(data.providers || {})) {
    const deps = p.deployments && p.deployments.length ? p.deployments : [{}];
    for (const d of deps) rows.push({ name, p, d });
  }
  const state = (st) => h("span", { class: `badge ${st === "closed" ? "ok" : st === "open" ? "bad" : "warn"}` }, st);
  const err = (e) => (e ? [e.type, e.status, e.message].filter((x) => x !== null && x !== undefined).join(" · ") : null);
  return [
    h("p", {}, "Overall: ", h("span", { class: `badge ${data.status === "ok" ? "ok" : data.status === "down" ? "bad" : "warn"}` }, data.status || "unknown")),
    table("Provider health and circuit breakers", [
      ["Provider", (r) => `${r.name} (${r.p.type})`],
      ["Health", (r) => (r.p.enabled === false ? `disabled: ${r.p.disabled_reason || ""}` : h("span", { class: `badge ${r.p.healthy ? "ok" : "bad"}` }, r.p.healthy ? "healthy" : "unhealthy"))],
      ["Probe latency", (r) => ms(r.p.latency_ms), { num: true }],
      ["Deployment", (r) => r.d.model],
      ["Breaker", (r) => (r.d.breaker ? state(r.d.breaker.state) : null)],
      ["In flight", (r) => r.d.in_flight, { num: true }],
      ["Requests", (r) => r.d.requests, { num: true }],
      ["Failures", (r) => r.d.failures, { num: true }],
      ["Last error", (r) => err(r.d.last_error) || err(r.p.probe && r.p.probe.error)],
    ], rows, "No providers configured."),
  ];
}

async function adminOverview(ctx) {
  const q = apiQuery(ctx.params);
  const [totals, byProvider, byDay, healthRows] = await Promise.all([
    get(`/admin/usage${qs(q)}`),
    get(`/admin/usage${qs({ ...q, group_by: "provider" })}`),
    get(`/admin/usage${qs({ ...q, group_by: "day" })}`),
    health(),
  ]);
  const t = totals.totals;
  const { from, to } = range(ctx.params);
  const providers = byProvider.data.map((r) => ({ label: String(r.provider ?? "none"), value: r.calls, row: r }));
  return [
    h("h1", {}, "Overview"),
    filterForm(ctx.params, (p) => ctx.go("overview", p)),
    h("p", { class: "muted" }, `${day(`${from}T00:00:00Z`)} to ${day(`${to}T00:00:00Z`)} (UTC).`),
    cards([["Calls", num(t.calls)], ["Tokens", num(tokens(t))], ["Cost", usd(t.cost_usd)], ["Error rate", pct(t.error_rate)],
      ["Latency p50", ms(t.latency_p50_ms)], ["Latency p95", ms(t.latency_p95_ms)]]),
    h("div", { class: "charts" },
      pie("Usage share by provider", providers, num, "Calls"),
      line("Cost per day", byDay.data.map((r) => ({ label: String(r.day), value: r.cost_usd })), usd, "Cost (USD)", (v) => compact(v, "$")),
      bars("Latency by provider", providers.map((p) => ({ label: p.label, values: [p.row.latency_p50_ms, p.row.latency_p95_ms] })), ["p50", "p95"], ms, (v) => `${compact(v)} ms`),
      gauge("Success rate", t.calls ? 1 - t.error_rate : null, [["Calls", num(t.calls)], ["Errors", num(t.errors)]])),
    h("h2", {}, "Providers"),
    ...healthRows,
  ];
}

export async function render(ctx) {
  if (ctx.role === "admin") return adminOverview(ctx);
  const me = await get("/ui/api/me/usage");
  return [h("h1", {}, "Overview"), ...mySummary(me, cards, budgetMeter)];
}
