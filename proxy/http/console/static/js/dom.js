// DOM helpers. Everything shown goes through text nodes / textContent: a name or a model's output holding
// `<script>` is displayed as text, never parsed as HTML (no HTML-parsing sink anywhere in the console).

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** h("button", {type: "button", onclick}, "Save") */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element (presentation attributes only: the CSP forbids inline style attributes). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let uid = 0;
export const newId = (p) => `${p}-${++uid}`;

/** A labelled field: the label wraps the control, so its accessible name is the label text. */
export function field(label, control) {
  return h("label", {}, label, control);
}

export function input(name, attrs = {}) {
  return h("input", { name, ...attrs });
}

export function select(name, options, value, attrs = {}) {
  const el = h("select", { name, ...attrs },
    options.map((o) => {
      const [v, text] = Array.isArray(o) ? o : [o, o];
      return h("option", { value: v, selected: v === value }, text);
    }));
  return el;
}

/**
 * A table from rows: columns are [header, (row) => cell, {num: true}]; a cell may be a Node or a value.
 * `caption` names the table for assistive technology.
 */
export function table(caption, columns, rows, empty = "Nothing to show for this selection.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  // a wide table scrolls sideways: its wrapper is a named, focusable region so keyboards can scroll it
  return h("div", { class: "table-wrap", role: "region", "aria-label": caption, tabindex: 0 },
    h("table", {},
      h("caption", { class: "muted" }, caption),
      h("thead", {}, h("tr", {}, columns.map(([head, , o]) => h("th", { scope: "col", class: o?.num ? "num" : null }, head)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, columns.map(([, get, o]) => {
        const v = get(r);
        return h("td", { class: o?.num ? "num" : null }, v === undefined || v === null || v === "" ? "—" : v);
      }))))));
}

// formatting
const nf = new Intl.NumberFormat("en");
export const num = (v) => (v === null || v === undefined ? "—" : nf.format(v));
export function usd(v) {
  if (v === null || v === undefined) return "—";
  const d = Math.abs(v) >= 1 ? 2 : Math.abs(v) >= 0.01 ? 4 : 6;
  return "$" + Number(v).toFixed(d);
}
/** Short axis labels: $0.005, 1.2k. */
export function compact(v, prefix = "") {
  if (!v) return `${prefix}0`;
  return prefix + (Math.abs(v) >= 1000 ? new Intl.NumberFormat("en", { notation: "compact" }).format(v) : String(Number(v.toPrecision(2))));
}
export const pct = (f) => (f === null || f === undefined ? "—" : `${(f * 100).toFixed(f * 100 >= 10 ? 0 : 1)}%`);
export const ms = (v) => (v === null || v === undefined ? "—" : `${Math.round(v)} ms`);
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}
export function day(iso) {
  if (!iso) return "—";
  // the calendar date as written (a budget period ends at midnight of the budget's own time zone)
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(String(iso));
  const d = m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], 12)) : new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleDateString("en-GB", { dateStyle: "medium", timeZone: "UTC" });
}
export const tokens = (r) => (r.prompt_tokens || 0) + (r.completion_tokens || 0);

/** A <meter> for a budget's fraction used, with its percentage as text beside it. */
export function budgetMeter(fraction, label) {
  const f = Math.max(0, fraction || 0);
  return h("span", {}, h("meter", { class: "meter", min: 0, max: 1, low: 0.8, high: 0.99, optimum: 0, value: Math.min(1, f), "aria-label": label }),
    " ", pct(f));
}
