// The admin filters (date range, user, team, key, provider, alias), kept in the URL fragment so Overview and
// Usage share them and a filtered view can be bookmarked. apiQuery() turns them into /admin/usage filters.
import { field, h, input } from "./dom.js";

export const FILTERS = [["user", "User"], ["team", "Team"], ["key", "Key"], ["provider", "Provider"], ["alias", "Alias"]];

const isoDay = (d) => d.toISOString().slice(0, 10);

export function range(params) {
  const today = new Date();
  const from = params.get("from") || isoDay(new Date(today.getTime() - 6 * 86400000));
  const to = params.get("to") || isoDay(today);
  return { from, to };
}

/** /admin/usage filters: since = start of `from` (UTC), until = end of `to` (UTC). */
export function apiQuery(params) {
  const { from, to } = range(params);
  const until = new Date(`${to}T00:00:00Z`);
  until.setUTCDate(until.getUTCDate() + 1);
  const q = { since: `${from}T00:00:00Z`, until: until.toISOString().replace(".000Z", "Z") };
  for (const [name] of FILTERS) if (params.get(name)) q[name] = params.get(name);
  return q;
}

/** The filter form; submitting it navigates to `path` with the new filters (extra: more fields to keep). */
export function filterForm(params, onApply, extra = [], datesOnly = false) {
  const { from, to } = range(params);
  const fromIn = input("from", { type: "date", value: from, required: true });
  const toIn = input("to", { type: "date", value: to, required: true });
  const inputs = (datesOnly ? [] : FILTERS).map(([name, label]) => [name, label, input(name, { type: "text", value: params.get(name) || "", size: 12 })]);
  const form = h("form", { class: "panel row", "aria-label": "Filters" },
    field("From", fromIn), field("To", toIn),
    inputs.map(([, label, el]) => field(label, el)),
    extra.map(([label, el]) => field(label, el)),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    next.set("from", fromIn.value || from);
    next.set("to", toIn.value || to);
    for (const [name, , el] of inputs) if (el.value.trim()) next.set(name, el.value.trim());
    for (const [, el] of extra) if (el.value) next.set(el.name, el.value);
    onApply(next);
  });
  return form;
}
