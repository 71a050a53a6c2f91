// Shared pieces of the admin forms: limits and budget fields, and the one-time secret panel.
import { field, h, input, select } from "./dom.js";

export const PERIODS = [["daily", "daily"], ["weekly", "weekly"], ["monthly", "monthly"]];

/** Inputs for rpm / tpm / rpd and a budget; read() gives {limits, budget} for the admin API (null = none). */
export function limitFields(current = {}) {
  const lim = current.limits || {};
  const bud = current.budget || {};
  const rpm = input("rpm", { type: "number", min: 1, step: 1, value: lim.rpm ?? "", size: 6 });
  const tpm = input("tpm", { type: "number", min: 1, step: 1, value: lim.tpm ?? "", size: 8 });
  const rpd = input("rpd", { type: "number", min: 1, step: 1, value: lim.rpd ?? "", size: 6 });
  const usd = input("budget_usd", { type: "number", min: 0, step: "0.01", value: bud.usd ?? "", size: 7 });
  const period = select("budget_period", PERIODS, bud.period || "monthly");
  const nodes = [field("Requests per minute", rpm), field("Tokens per minute", tpm), field("Requests per day", rpd),
    field("Budget (USD)", usd), field("Budget period", period)];
  const read = () => {
    const limits = { ...lim };
    for (const [k, el] of [["rpm", rpm], ["tpm", tpm], ["rpd", rpd]]) {
      if (el.value) limits[k] = Number(el.value);
      else delete limits[k];
    }
    const budget = usd.value === "" ? null : { ...bud, usd: Number(usd.value), period: period.value };
    return { limits: Object.keys(limits).length ? limits : null, budget };
  };
  return { nodes, read };
}

export function describeLimits(r) {
  const l = r.limits || {};
  const parts = ["rpm", "tpm", "rpd"].filter((k) => l[k]).map((k) => `${l[k]} ${k}`);
  return parts.length ? parts.join(", ") : "none";
}

export function describeBudget(b) {
  return b ? `$${b.usd} ${b.period}` : "none";
}

/** The secret of a new or rotated key, shown once: it is in this element only, until "Done" removes it. */
export function secretPanel(holder, title, secret) {
  const panel = h("section", { class: "panel note", role: "status", "aria-label": "New key secret" },
    h("h2", {}, title),
    h("p", {}, "Copy this secret now: the gateway keeps only its hash and the console will not show it again."),
    h("p", {}, h("code", { class: "secret" }, secret)),
    h("button", { type: "button", onclick: () => panel.remove() }, "Done"));
  holder.prepend(panel);
  panel.querySelector("button").focus();
}
