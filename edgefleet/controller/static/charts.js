// Small SVG time-series charts: no library, no build step.

const SVG = "http://www.w3.org/2000/svg";
const H = 190;
const M = { top: 10, right: 12, bottom: 24, left: 56 };
export const PALETTE = ["#1f5fbf", "#d9480f", "#7048e8", "#2b8a3e", "#c2255c"];

function node(tag, attrs = {}, text) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

function niceStep(span, ticks) {
  const raw = span / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

function clock(ts, withSeconds) {
  const d = new Date(ts * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}${withSeconds ? `:${pad(d.getSeconds())}` : ""}`;
}

// A gap much longer than the usual spacing means the device was away: break the line there.
function segments(points) {
  if (points.length < 3) return [points];
  const gaps = [];
  for (let i = 1; i < points.length; i++) gaps.push(points[i][0] - points[i - 1][0]);
  const sorted = [...gaps].sort((a, b) => a - b);
  const limit = Math.max(sorted[Math.floor(sorted.length / 2)] * 5, 30);
  const out = [[points[0]]];
  for (let i = 1; i < points.length; i++) {
    if (gaps[i - 1] > limit) out.push([]);
    out[out.length - 1].push(points[i]);
  }
  return out;
}

/**
 * Draw series into `figure` (a <figure> holding an <svg>).
 * series: [{name, points: [[ts, value], ...], color?}]; opts: {from, to, format(v), unit, yMin, marks}
 * marks: [[ts, value]] drawn as red dots (drift verdicts); bands: [{from, to, label}] shaded behind
 * the series (drift alert periods). Sets data-points (and data-bands) on the svg.
 */
export function drawChart(figure, series, opts) {
  const { to, format = (v) => v.toFixed(1), unit = "", title = "", bars = 0 } = opts;
  const svg = figure.querySelector("svg");
  // Match the drawn width so 11px labels stay 11px; the chart is redrawn on every refresh.
  const W = Math.max(320, Math.round(svg.getBoundingClientRect().width || 560));
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const all = series.flatMap((s) => s.points);
  const marks = opts.marks || [];
  const bands = opts.bands || [];
  const latest = figure.querySelector(".latest");
  const legend = figure.querySelector(".legend");
  svg.dataset.points = String(all.length);
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  svg.append(node("rect", { x: M.left, y: M.top, width: plotW, height: plotH, fill: "#fbfcfd" }));
  if (!all.length) {
    svg.append(node("text", { x: M.left + plotW / 2, y: M.top + plotH / 2, "text-anchor": "middle", class: "empty" },
      "no data in this time range"));
    svg.setAttribute("aria-label", `${title}: no data in this time range`);
    if (latest) latest.textContent = "";
    if (legend) legend.replaceChildren();
    return;
  }
  // Never cut off data that starts before the requested range (e.g. a bucket begun earlier).
  const from = Math.min(opts.from, ...all.map((p) => p[0]));
  const values = all.map((p) => p[1]).concat(marks.map((p) => p[1]));
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (opts.yMin !== undefined) lo = Math.min(lo, opts.yMin);
  if (hi === lo) hi = lo + (Math.abs(lo) || 1);
  const step = niceStep(hi - lo, 4);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const x = (ts) => M.left + ((ts - from) / (to - from)) * plotW;
  const y = (v) => M.top + plotH - ((v - lo) / (hi - lo)) * plotH;

  svg.dataset.bands = String(bands.length);
  for (const b of bands) {
    // An alert period of one report is still visible: at least 3 px wide.
    const left = x(Math.max(b.from, from));
    const width = Math.max(3, x(Math.min(b.to, to)) - left);
    const band = node("rect", { x: left, y: M.top, width, height: plotH, class: "alert-band", "data-channel": b.label });
    band.append(node("title", {}, `${b.label} drifted`));
    svg.append(band);
  }
  for (let v = lo; v <= hi + step / 2; v += step) {
    svg.append(node("line", { x1: M.left, x2: M.left + plotW, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(node("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis-label" }, format(v)));
  }
  const span = to - from;
  const tickStep = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600].find((s) => span / s <= 6) || 43200;
  for (let t = Math.ceil(from / tickStep) * tickStep; t <= to; t += tickStep) {
    svg.append(node("line", { x1: x(t), x2: x(t), y1: M.top, y2: M.top + plotH, class: "grid" }));
    // A label centred on a tick at the right edge would be cut off: leave it out.
    if (M.left + plotW - x(t) < 14) continue;
    svg.append(node("text", { x: x(t), y: H - 6, "text-anchor": "middle", class: "axis-label" }, clock(t, span < 300)));
  }
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    if (bars) {
      // Counts per time bucket: one bar per bucket; later series (subsets) are drawn over earlier.
      for (const [ts, v] of s.points) {
        const left = x(ts);
        const width = Math.max(1, x(Math.min(ts + bars, to)) - left - 1);
        svg.append(node("rect", { x: left, y: y(v), width, height: y(lo) - y(v), fill: color, class: "bar" }));
      }
      return;
    }
    for (const seg of segments(s.points)) {
      if (seg.length === 1) {
        svg.append(node("circle", { cx: x(seg[0][0]), cy: y(seg[0][1]), r: 2.5, fill: color, class: "point" }));
        continue;
      }
      const d = seg.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
      svg.append(node("polyline", { points: d, class: "series", stroke: color, "data-series": s.name }));
    }
  });
  for (const [ts, v] of marks) {
    svg.append(node("circle", { cx: x(ts), cy: y(v), r: 4, fill: "#b42318", class: "mark" }));
  }
  const summary = series
    .filter((s) => s.points.length)
    .map((s) => `${s.name} ${format(s.points[s.points.length - 1][1])}${unit}`)
    .join(", ");
  const periods = bands.length ? `; ${bands.length} alert periods (${[...new Set(bands.map((b) => b.label))].join(", ")})` : "";
  svg.setAttribute("aria-label", `${title}: latest ${summary}; ${all.length} points${periods}`);
  if (latest) latest.textContent = summary;
  if (legend) {
    legend.replaceChildren(
      ...(series.length > 1 || marks.length || bands.length
        ? series.map((s, i) => {
            const item = document.createElement("span");
            item.style.setProperty("--swatch", s.color || PALETTE[i % PALETTE.length]);
            item.textContent = s.name;
            return item;
          })
        : []),
    );
    if (marks.length) {
      const item = document.createElement("span");
      item.style.setProperty("--swatch", "#b42318");
      item.textContent = "drift detected";
      legend.append(item);
    }
    if (bands.length) {
      const item = document.createElement("span");
      item.style.setProperty("--swatch", "rgba(180, 35, 24, 0.25)");
      item.textContent = "alert period";
      legend.append(item);
    }
  }
}
