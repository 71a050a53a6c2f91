// Charts as SVG built here (no third-party code): pie, line, bars and gauge. Each is a <figure> whose SVG has
// role="img" and a summary as its name, and a table with the same numbers (the text alternative).
import { compact, h, s, newId, table } from "./dom.js";

const COLOURS = 7;
const fill = (i) => `f${(i % COLOURS) + 1}`;
const swatch = (i) => h("span", { class: `swatch s${(i % COLOURS) + 1}`, "aria-hidden": "true" });

function figure(title, summary, svg, legend, alt) {
  const id = newId("chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-labelledby", id);
  return h("figure", {},
    h("figcaption", {}, title),
    h("p", { id, class: "muted" }, summary),
    svg,
    legend,
    h("details", {}, h("summary", {}, `${title}: table`), alt));
}

function empty(title) {
  return h("figure", {}, h("figcaption", {}, title), h("p", { class: "muted" }, "No calls in this selection."));
}

/** items: [{label, value}], shares of the whole. */
export function pie(title, items, fmt, unit) {
  const total = items.reduce((a, b) => a + b.value, 0);
  if (!total) return empty(title);
  const svg = s("svg", { viewBox: "0 0 200 200" });
  let angle = -Math.PI / 2;
  items.forEach((it, i) => {
    const frac = it.value / total;
    if (frac >= 0.9999) {
      svg.append(s("circle", { cx: 100, cy: 100, r: 90, class: `${fill(i)} slice` }));
      return;
    }
    const a2 = angle + frac * 2 * Math.PI;
    const [x1, y1, x2, y2] = [100 + 90 * Math.cos(angle), 100 + 90 * Math.sin(angle), 100 + 90 * Math.cos(a2), 100 + 90 * Math.sin(a2)];
    svg.append(s("path", { d: `M100,100 L${x1},${y1} A90,90 0 ${frac > 0.5 ? 1 : 0} 1 ${x2},${y2} Z`, class: `${fill(i)} slice` }));
    angle = a2;
  });
  const share = (v) => `${((v / total) * 100).toFixed(1)}%`;
  const summary = items.map((it) => `${it.label} ${share(it.value)}`).join(", ");
  const legend = h("ul", { class: "legend" }, items.map((it, i) => h("li", {}, swatch(i), `${it.label}: ${share(it.value)}`)));
  const alt = table(title, [["Provider", (r) => r.label], [unit, (r) => fmt(r.value), { num: true }], ["Share", (r) => share(r.value), { num: true }]], items);
  return figure(title, `Share by provider: ${summary}.`, svg, legend, alt);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

/** points: [{label, value}] in order (e.g. per day). */
export function line(title, points, fmt, unit, axis = (v) => compact(v)) {
  if (!points.length) return empty(title);
  const W = 360, H = 200, L = 56, R = 12, T = 12, B = 36;
  const max = niceMax(Math.max(...points.map((p) => p.value)));
  const x = (i) => L + (points.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (points.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}` });
  for (const t of [0, 0.5, 1]) {
    svg.append(s("line", { x1: L, x2: W - R, y1: y(max * t), y2: y(max * t), class: "grid" }),
      s("text", { x: L - 6, y: y(max * t) + 4, "text-anchor": "end" }, axis(max * t)));
  }
  svg.append(s("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }), s("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  svg.append(s("polyline", { points: points.map((p, i) => `${x(i)},${y(p.value)}`).join(" "), class: "line" }));
  const every = Math.max(1, Math.ceil(points.length / 6));
  points.forEach((p, i) => {
    svg.append(s("circle", { cx: x(i), cy: y(p.value), r: 3, class: "dot" }));
    if (i % every === 0 || i === points.length - 1) svg.append(s("text", { x: x(i), y: H - B + 16, "text-anchor": "middle" }, p.label.slice(5)));
  });
  const peak = points.reduce((a, b) => (b.value > a.value ? b : a));
  const summary = `${points.length} day(s) from ${points[0].label} to ${points[points.length - 1].label}; highest ${fmt(peak.value)} on ${peak.label}.`;
  const alt = table(title, [["Day", (r) => r.label], [unit, (r) => fmt(r.value), { num: true }]], points);
  return figure(title, summary, svg, null, alt);
}

/** groups: [{label, values: [v per series]}], series: names (e.g. p50, p95). */
export function bars(title, groups, series, fmt, axis = (v) => compact(v)) {
  if (!groups.length) return empty(title);
  const W = 360, H = 200, L = 56, R = 12, T = 12, B = 36;
  const max = niceMax(Math.max(...groups.flatMap((g) => g.values.map((v) => v || 0))));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const band = (W - L - R) / groups.length;
  const bw = Math.min(28, (band * 0.8) / series.length);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}` });
  for (const t of [0, 0.5, 1]) {
    svg.append(s("line", { x1: L, x2: W - R, y1: y(max * t), y2: y(max * t), class: "grid" }),
      s("text", { x: L - 6, y: y(max * t) + 4, "text-anchor": "end" }, axis(max * t)));
  }
  groups.forEach((g, gi) => {
    const x0 = L + gi * band + (band - bw * series.length) / 2;
    g.values.forEach((v, si) => {
      const val = v || 0;
      svg.append(s("rect", { x: x0 + si * bw, y: y(val), width: bw - 2, height: Math.max(0, H - B - y(val)), class: fill(si) }));
    });
    svg.append(s("text", { x: L + gi * band + band / 2, y: H - B + 16, "text-anchor": "middle" }, g.label.slice(0, 14)));
  });
  svg.append(s("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  const summary = groups.map((g) => `${g.label}: ${series.map((n, i) => `${n} ${fmt(g.values[i])}`).join(", ")}`).join("; ");
  const legend = h("ul", { class: "legend" }, series.map((n, i) => h("li", {}, swatch(i), n)));
  const alt = table(title, [["Provider", (r) => r.label], ...series.map((n, i) => [n, (r) => fmt(r.values[i]), { num: true }])], groups);
  return figure(title, `${summary}.`, svg, legend, alt);
}

/** A half-circle gauge of a fraction (e.g. success rate). */
export function gauge(title, fraction, detail) {
  if (fraction === null || fraction === undefined) return empty(title);
  const f = Math.max(0, Math.min(1, fraction));
  const svg = s("svg", { viewBox: "0 0 200 120" });
  const arc = (to) => {
    const a = Math.PI * (1 + to);
    return `M20,100 A80,80 0 0 1 ${100 + 80 * Math.cos(a)},${100 + 80 * Math.sin(a)}`;
  };
  const cls = f >= 0.99 ? "gauge-ok" : f >= 0.95 ? "gauge-warn" : "gauge-bad";
  svg.append(s("path", { d: arc(1), class: "gauge-bg" }));
  if (f > 0) svg.append(s("path", { d: arc(f), class: cls }));
  const text = `${(f * 100).toFixed(1)}%`;
  svg.append(s("text", { x: 100, y: 95, "text-anchor": "middle", class: "big" }, text));
  const alt = table(title, [["Measure", (r) => r[0]], ["Value", (r) => r[1], { num: true }]], [["Success rate", text], ...detail]);
  return figure(title, `Success rate ${text}.`, svg, null, alt);
}
