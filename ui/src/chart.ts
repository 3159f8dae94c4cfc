// A small inline SVG line chart (no library): values over time, the last value and the peak
// printed beside it. Built with createElementNS and attributes only.

import { h, svg } from "./dom";

export function sparkline(points: { t: number; v: number | null }[], opts: { label: string; unit: string; width?: number; height?: number; minutes?: number }): HTMLElement {
  const w = opts.width ?? 160;
  const hh = opts.height ?? 32;
  const now = Date.now();
  const vals = points.filter((p) => p.v !== null && Number.isFinite(p.v)) as { t: number; v: number }[];
  // The x axis covers the samples there are (at least 5 min, at most `minutes`), so that a
  // young collector's few minutes are not a sliver at the right edge.
  const oldest = vals.length ? Math.min(...vals.map((p) => p.t)) : now;
  const span = Math.min((opts.minutes ?? 60) * 60e3, Math.max(5 * 60e3, now - oldest));
  const max = Math.max(1e-9, ...vals.map((p) => p.v));
  const x = (t: number) => Math.max(0, Math.min(w, ((t - (now - span)) / span) * w));
  const y = (v: number) => hh - 2 - (v / max) * (hh - 4);
  const d = vals.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  const title = svg("title", {});
  const last = vals.length ? vals[vals.length - 1].v : null;
  title.textContent = `${opts.label} over the last ${Math.round(span / 60e3)} min: ${vals.length} samples, peak ${fmt(max)} ${opts.unit}`;
  const chart = svg("svg", { width: w, height: hh, viewBox: `0 0 ${w} ${hh}`, class: "spark", role: "img", "aria-label": `${opts.label} chart` },
    title,
    svg("line", { x1: 0, x2: w, y1: hh - 1, y2: hh - 1, class: "axis" }),
    ...(d ? [svg("path", { d, class: "line" })] : []));
  return h("span", { class: "sparkwrap" }, chart as unknown as Node,
    h("span", { class: "sparkval" }, last === null ? "no data" : `${fmt(last)} ${opts.unit}`, vals.length ? h("small", null, ` peak ${fmt(max)}`) : null));
}

function fmt(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}
