// One device: facts, telemetry charts, drift, results, events, and admin commands; live.
import {
  api, driftBadge, el, fmtAgo, fmtNumber, fmtPercent, fmtTime, liveUpdates, signedIn, throttle,
} from "/static/api.js";
import { drawChart } from "/static/charts.js";

const deviceId = new URLSearchParams(location.search).get("id") || "";
const base = `/api/devices/${encodeURIComponent(deviceId)}`;
const MAX_POINTS = 1200;
let range = 900;
let firstSeen = 0;

const CHARTS = [
  { id: "throughput", title: "Throughput (windows/s)", yMin: 0, digits: 2,
    metrics: [["throughput_windows_per_s", "windows/s"]] },
  { id: "latency", title: "Inference latency (ms)", yMin: 0, digits: 2,
    metrics: [["inference_latency_ms_p50", "p50"], ["inference_latency_ms_p95", "p95"], ["inference_latency_ms_p99", "p99"]] },
  { id: "cpu", title: "CPU (% of one machine)", yMin: 0, digits: 1, metrics: [["cpu_percent", "CPU"]] },
  { id: "memory", title: "Memory RSS (MB)", yMin: 0, digits: 1, scale: 1e-6, metrics: [["memory_rss_bytes", "RSS"]] },
  { id: "temperature", title: "Temperature (°C)", digits: 1, metrics: [["temperature_c", "hottest zone"]] },
  { id: "fallback", title: "Fallback share (%)", yMin: 0, digits: 1, scale: 100, metrics: [["fallback_share", "cloud"]] },
  { id: "writes", title: "Flash writes (MiB/h)", yMin: 0, digits: 2, scale: 1 / 1048576,
    metrics: [["process_bytes_written_per_hour", "agent process"], ["store_bytes_written_per_hour", "store"]] },
  { id: "drift", title: "Drift (PSI per input channel)", yMin: 0, digits: 3, drift: true },
  { id: "results", title: "Results per bucket", yMin: 0, digits: 0, results: true },
];

function figure(spec) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart-svg");
  return el("figure", { class: "chart", id: `chart-${spec.id}`, "data-chart": spec.id },
    el("figcaption", {}, el("span", { text: spec.title }), el("span", { class: "latest" })),
    svg,
    el("div", { class: "legend" }));
}

// Averages neighbours so a long range never puts thousands of nodes into one polyline.
function thin(points) {
  if (points.length <= MAX_POINTS) return points;
  const size = Math.ceil(points.length / MAX_POINTS);
  const out = [];
  for (let i = 0; i < points.length; i += size) {
    const chunk = points.slice(i, i + size);
    out.push([chunk[chunk.length - 1][0], chunk.reduce((s, p) => s + p[1], 0) / chunk.length]);
  }
  return out;
}

function resolution() {
  if (range <= 3600) return "raw";
  return range <= 2 * 86400 ? "minute" : "hour";
}

async function telemetry(metric, since, res) {
  const q = new URLSearchParams({ metric, since: String(since), resolution: res });
  const data = await api(`${base}/telemetry?${q}`);
  return data.points.map((p) => [p.ts, p.value]);
}

// Long ranges read the per-minute/per-hour aggregates; the controller folds raw samples into them
// once a minute, so the newest stretch comes from the raw samples after the last aggregate.
async function series(metric, now) {
  const res = resolution();
  if (res === "raw") return telemetry(metric, -range, "raw");
  const history = await telemetry(metric, -range, res);
  const step = res === "minute" ? 60 : 3600;
  const tailFrom = history.length ? history[history.length - 1][0] + step : now - range;
  return history.concat(await telemetry(metric, tailFrom, "raw"));
}

function fact(list, label, value) {
  list.append(el("dt", { text: label }), el("dd", { text: value }));
}

function renderDetail(detail, latestDrift) {
  const d = detail.device;
  firstSeen = d.first_seen;
  document.getElementById("device-title").textContent = d.device_id;
  document.title = `${d.device_id} · edgefleet`;
  const status = document.getElementById("status");
  status.className = `badge ${d.online ? "online" : "offline"}`;
  status.textContent = d.online ? "online" : "offline";
  const badge = driftBadge(latestDrift?.drifted ?? false, latestDrift?.ts ?? null, null, "drift detected");
  const drift = document.getElementById("drift");
  drift.className = badge.class;
  drift.textContent = badge.text;
  drift.title = badge.title;
  const facts = document.getElementById("facts");
  facts.replaceChildren();
  if (d.name) fact(facts, "Name", d.name);
  if (d.tags && d.tags.length) fact(facts, "Tags", d.tags.join(", "));
  fact(facts, "Model", d.model_name ? `${d.model_name} ${d.model_version || ""}` : d.model_version || "–");
  fact(facts, "Agent", d.agent_version || "–");
  fact(facts, "Last seen", `${fmtAgo(d.last_seen)} (${fmtTime(d.last_seen)})`);
  if (d.status_changed_at) fact(facts, d.online ? "Online since" : "Offline since", fmtTime(d.status_changed_at));
  fact(facts, "First seen", fmtTime(d.first_seen));
  const hw = Object.entries(d.hardware || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
  fact(facts, "Hardware", hw || "–");
  const delivery = detail.delivery;
  if (delivery) {
    fact(facts, "Results received", String(delivery.results_received));
    fact(facts, "Results missing", missingText(delivery));
  }
}

// Message ids lost between the device and this controller (docs/cloud_sync.md, gap detection).
function missingText(delivery) {
  if (!delivery.missing_messages) return "none";
  const ranges = delivery.missing.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(", ");
  const more = delivery.missing.length < 100 ? "" : " …";
  return `${delivery.missing_messages} messages: ids ${ranges}${more}`;
}

function renderResults(summary) {
  const list = document.getElementById("results");
  list.replaceChildren();
  list.dataset.total = String(summary.total);
  fact(list, "Results", summary.total.toLocaleString());
  fact(list, "Answered by the cloud", `${summary.cloud_count.toLocaleString()} (${fmtPercent(summary.fallback_share)})`);
  fact(list, "Result latency mean / p95", `${fmtNumber(summary.mean_latency_ms, 1)} / ${fmtNumber(summary.p95_latency_ms, 1)} ms`);
  const labels = [...summary.labels].sort((a, b) => b.count - a.count).slice(0, 5)
    .map((l) => `${l.label} ${l.count.toLocaleString()}`).join(", ");
  fact(list, "Labels", labels || "–");
}

function renderEvents(events) {
  document.querySelector("#events tbody").replaceChildren(...(events.length ? events.map((e) => el("tr", {},
    el("td", { text: fmtTime(e.ts) }),
    el("td", { class: `level-${e.level}`, text: e.level }),
    el("td", { text: e.kind }),
    el("td", { text: e.message }),
  )) : [el("tr", {}, el("td", { colSpan: 4, class: "muted", text: "No events in the last day." }))]));
}

function renderCommands(commands) {
  document.querySelector("#command-history tbody").replaceChildren(...(commands.length ? commands.map((c) => el("tr", { "data-command-id": c.command_id },
    el("td", { text: fmtTime(c.created_at) }),
    el("td", { text: c.name }),
    el("td", {}, el("span", { class: `badge ${c.status}`, text: c.status }),
      // The device's reason (validation errors, why it expired) sits beside the outcome.
      c.detail && !["pending", "sent"].includes(c.status) ? el("span", { class: "muted command-detail", text: ` ${c.detail}` }) : null),
    el("td", { text: c.created_by || "–" }),
  )) : [el("tr", {}, el("td", { colSpan: 4, class: "muted", text: "No commands yet." }))]));
}

// Reports that name their channels (every agent report does) chart one PSI line per channel and
// shade each channel's alert periods: from the first report it was flagged in to the last.
function driftPerChannel(reports) {
  const chronological = [...reports].reverse()
    .filter((r) => Array.isArray(r.details?.channels) && r.details.channels.some((c) => c.psi != null));
  if (!chronological.length) return null;
  const names = [...new Set(chronological.flatMap((r) => r.details.channels.map((c) => c.channel)))];
  const series = names.map((name) => ({
    name,
    points: chronological.flatMap((r) => {
      const c = r.details.channels.find((x) => x.channel === name);
      return c && c.psi != null ? [[r.ts, c.psi]] : [];
    }),
  }));
  const bands = [];
  for (const name of names) {
    let open = null;
    for (const r of chronological) {
      const c = r.details.channels.find((x) => x.channel === name);
      if (c?.drifted) {
        // r.ts is the report's end on the controller's clock; its span is the device's.
        const span = Math.max(0, (r.details.window_end ?? r.ts) - (r.details.window_start ?? r.ts));
        if (!open) open = { from: r.ts - span, to: r.ts, label: name };
        else open.to = r.ts;
      } else if (open) {
        bands.push(open);
        open = null;
      }
    }
    if (open) bands.push(open);
  }
  return { series, bands };
}

async function refreshCharts(now) {
  const tasks = CHARTS.map(async (spec) => {
    const fig = document.getElementById(`chart-${spec.id}`);
    const fmt = (v) => fmtNumber(v, spec.digits);
    // A young device's history fills the chart instead of hugging its right edge.
    const from = Math.max(now - range, firstSeen - 10);
    const opts = { from, to: now, format: fmt, title: spec.title, yMin: spec.yMin };
    if (spec.drift) {
      const reports = await api(`${base}/drift?since=${-range}&limit=10000`);
      const perChannel = driftPerChannel(reports);
      if (perChannel) {
        drawChart(fig, perChannel.series, { ...opts, bands: perChannel.bands });
        return;
      }
      const points = reports.filter((r) => r.score !== null).map((r) => [r.ts, r.score]).reverse();
      const marks = reports.filter((r) => r.drifted && r.score !== null).map((r) => [r.ts, r.score]);
      drawChart(fig, [{ name: "PSI", points }], { ...opts, marks });
      return;
    }
    if (spec.results) {
      const bucket = Math.max(60, Math.round(range / 120));
      const summary = await api(`${base}/results/summary?since=${-range}&bucket_s=${bucket}`);
      renderResults(summary);
      const total = summary.buckets.map((b) => [b.bucket_start, b.total]);
      const cloud = summary.buckets.map((b) => [b.bucket_start, b.cloud_count]);
      const named = [{ name: `results per ${summary.bucket_s} s`, points: total }, { name: "answered by cloud", points: cloud }];
      drawChart(fig, named, { ...opts, bars: summary.bucket_s });
      return;
    }
    const all = await Promise.all(spec.metrics.map(([metric]) => series(metric, now)));
    const scale = spec.scale || 1;
    drawChart(fig, spec.metrics.map(([, name], i) => ({
      name, points: thin(all[i]).map(([t, v]) => [t, v * scale]),
    })), opts);
  });
  await Promise.all(tasks);
}

async function refresh() {
  const now = Date.now() / 1000;
  try {
    // since=0: the latest drift report ever sent, however old (none: "no drift data").
    const [detail, events, commands, drift] = await Promise.all([
      api(base), api(`${base}/events?limit=50`), api(`${base}/commands?limit=20`),
      api(`${base}/drift?since=0&limit=1`),
    ]);
    renderDetail(detail, drift[0] ?? null);
    renderEvents(events);
    renderCommands(commands);
    await refreshCharts(now);
    document.getElementById("load-error").hidden = true;
  } catch (error) {
    if (error.status === 401) return;
    const box = document.getElementById("load-error");
    box.textContent = error.status === 404 ? `No device "${deviceId}" is known to this controller.` : `Could not load the device: ${error.message}`;
    box.hidden = false;
  }
}

const refreshSoon = throttle(refresh, 3000);

async function send(name, button) {
  const out = document.getElementById("command-result");
  button.disabled = true;
  out.textContent = `sending ${name}…`;
  try {
    const record = await api(`${base}/commands`, { method: "POST", body: { name, args: {} } });
    out.textContent = `${name}: ${record.status} (${record.command_id})`;
  } catch (error) {
    out.textContent = `${name} failed: ${error.message}${error.hint ? ` — ${error.hint}` : ""}`;
  } finally {
    button.disabled = false;
    refreshSoon();
  }
}

async function main() {
  if (!deviceId) {
    const box = document.getElementById("load-error");
    box.textContent = "No device given: open a device from the fleet table.";
    box.hidden = false;
    return;
  }
  const me = await signedIn();
  document.getElementById("charts").replaceChildren(...CHARTS.map(figure));
  if (me.role === "admin") {
    document.getElementById("commands-section").hidden = false;
    for (const button of document.querySelectorAll("[data-command]")) {
      button.addEventListener("click", () => send(button.dataset.command, button));
    }
  }
  for (const button of document.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => {
      range = Number(button.dataset.range);
      for (const b of document.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b === button));
      refresh();
    });
  }
  await refresh();
  window.addEventListener("resize", refreshSoon);
  liveUpdates((payload) => {
    if (!payload) return refreshSoon();
    const mine = payload.devices_truncated || payload.devices.includes(deviceId)
      || deviceId in payload.status || payload.commands.length > 0;
    if (deviceId in payload.status) {
      const status = document.getElementById("status");
      status.className = `badge ${payload.status[deviceId] ? "online" : "offline"}`;
      status.textContent = payload.status[deviceId] ? "online" : "offline";
    }
    if (mine) refreshSoon();
    return undefined;
  });
}

main().catch((error) => {
  // 401: the page is already on its way to the login form.
  if (error.status !== 401) throw error;
});
