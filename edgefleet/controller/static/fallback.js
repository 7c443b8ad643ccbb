// The cloud fallback in the dashboard: share and reasons from stored results, budget use and
// cloud latency from each agent's last status (/api/fleet/fallback, /api/devices/{id}/fallback).
// Fills the fleet panel and the overview's "Cloud (24 h)" column on index.html, and the device
// panel on device.html; whichever of them the page has.
import { api, el, fmtAgo, fmtNumber, fmtPercent } from "/static/api.js";

const REFRESH_MS = 10000;

function reasonList(reasons, limit = 6) {
  if (!reasons.length) return el("span", { class: "muted", text: "none" });
  const items = reasons.slice(0, limit).map((r) => el("li", {
    "data-reason": r.reason,
    text: `${r.reason} (${r.answered_by}): ${r.count.toLocaleString()}`,
  }));
  return el("ul", { class: "reasons" }, ...items);
}

function budget(use) {
  return use == null ? "–" : fmtPercent(use, 0);
}

function facts(pairs) {
  return pairs.flatMap(([label, value, key]) => [
    el("dt", { text: label }),
    typeof value === "string" ? el("dd", { "data-fact": key, text: value }) : el("dd", { "data-fact": key }, value),
  ]);
}

function latency(p50, p95) {
  return p50 == null && p95 == null ? "–" : `${fmtNumber(p50, 1)} / ${fmtNumber(p95, 1)} ms`;
}

async function fleetPanel() {
  const panel = document.getElementById("fleet-fallback-facts");
  const data = await api("/api/fleet/fallback?since=-86400");
  panel.replaceChildren(...facts([
    ["Cloud share (24 h)", fmtPercent(data.cloud_share), "cloud_share"],
    ["Cloud answers / results", `${data.cloud_answers.toLocaleString()} / ${data.results.toLocaleString()}`, "counts"],
    ["Windows escalated", data.escalated.toLocaleString(), "escalated"],
    ["Reasons", reasonList(data.reasons), "reasons"],
    ["Devices at their budget", `${data.devices_at_budget} of ${data.devices_with_status} reporting`, "at_budget"],
    ["Cloud latency p50 (median) / p95 (worst)", latency(data.latency_p50_ms_median, data.latency_p95_ms_max), "latency"],
  ]));
  const rows = data.devices.filter((d) => d.escalated || d.status);
  document.getElementById("fleet-fallback-devices").querySelector("tbody").replaceChildren(...rows.map((d) => el("tr", { "data-device": d.device_id },
    el("th", { scope: "row" }, el("a", { href: `/static/device.html?id=${encodeURIComponent(d.device_id)}`, text: d.device_id })),
    el("td", { class: "num", text: fmtPercent(d.cloud_share) }),
    el("td", { text: d.reasons.length ? d.reasons[0].reason : "–" }),
    el("td", { class: "num", text: budget(d.requests_budget_use) }),
    el("td", { class: "num", text: budget(d.bytes_budget_use) }),
    el("td", { class: "num", text: latency(d.latency_p50_ms, d.latency_p95_ms) }),
  )));
  const byDevice = new Map(data.devices.map((d) => [d.device_id, d]));
  for (const cell of document.querySelectorAll("td[data-cloud-for]")) {
    const d = byDevice.get(cell.dataset.cloudFor);
    cell.textContent = d ? fmtPercent(d.cloud_share) : "–";
  }
  return byDevice;
}

async function devicePanel(id) {
  const d = await api(`/api/devices/${encodeURIComponent(id)}/fallback?since=-86400`);
  const status = d.status || {};
  document.getElementById("fallback-facts").replaceChildren(...facts([
    ["Cloud share (24 h)", fmtPercent(d.cloud_share), "cloud_share"],
    ["Cloud answers / results", `${d.cloud_answers.toLocaleString()} / ${d.results.toLocaleString()}`, "counts"],
    ["Windows escalated", d.escalated.toLocaleString(), "escalated"],
    ["Reasons", reasonList(d.reasons), "reasons"],
    ["Requests budget (last min)", d.status ? `${status.requests_last_min ?? "–"} / ${status.max_requests_per_min ?? "–"} (${budget(d.requests_budget_use)})` : "–", "requests_budget"],
    ["Bytes budget (last hour)", d.status ? `${status.bytes_last_hour ?? "–"} / ${status.max_bytes_per_hour ?? "–"} (${budget(d.bytes_budget_use)})` : "–", "bytes_budget"],
    ["Cloud latency p50 / p95", latency(d.latency_p50_ms, d.latency_p95_ms), "latency"],
    ["Agent counters", d.status ? `sent ${status.sent ?? "–"}, timeouts ${status.timeouts ?? "–"}, offline ${status.offline ?? "–"}, deferred ${status.deferred ?? "–"}, late answers ${status.late_answers ?? "–"}` : "no fallback status reported", "counters"],
    ["Reported", d.status_at ? fmtAgo(d.status_at) : "–", "status_at"],
  ]));
}

async function tick() {
  try {
    if (document.getElementById("fleet-fallback")) await fleetPanel();
    const id = new URLSearchParams(location.search).get("id");
    if (document.getElementById("fallback") && id) await devicePanel(id);
  } catch (error) {
    if (error.status === 401) return;
    const box = document.getElementById("fallback-error");
    if (box) {
      box.textContent = `Could not load the cloud fallback: ${error.message}`;
      box.hidden = false;
    }
  }
}

// The overview re-renders its table on every refresh: fill the new rows' cells soon after.
document.addEventListener("devices-rendered", () => setTimeout(tick, 0));
tick();
setInterval(tick, REFRESH_MS);
