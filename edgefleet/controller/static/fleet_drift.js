// The fleet drift panel: per model version, every report in range merged by addition on the
// controller (/api/fleet/drift) and scored once; live vs reference histograms per input channel.
import { api, el, fmtNumber } from "/static/api.js";

const SVG = "http://www.w3.org/2000/svg";
const state = { selected: "", since: -86400 };

function key(group) {
  return `${group.model_name ?? ""} ${group.model_version ?? ""}`;
}

function svgNode(tag, attrs = {}) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  return n;
}

// Ten deciles of the reference: the reference's share (grey) beside the live share (blue).
function histogram(channel) {
  const W = 200;
  const H = 90;
  const svg = svgNode("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "data-channel": channel.name });
  const reference = channel.reference ?? channel.live.map(() => 0);
  const top = Math.max(...channel.live, ...reference, 0.01);
  const slot = W / channel.live.length;
  channel.live.forEach((live, i) => {
    const ref = reference[i];
    const h = (v) => (v / top) * (H - 4);
    svg.append(svgNode("rect", { x: i * slot + 1, y: H - h(ref), width: slot / 2 - 1, height: h(ref), class: "reference" }));
    svg.append(svgNode("rect", { x: i * slot + slot / 2, y: H - h(live), width: slot / 2 - 1, height: h(live), class: "live" }));
  });
  const pct = (v) => `${Math.round(v * 100)}%`;
  svg.setAttribute("aria-label", `${channel.name} per reference decile: live ${channel.live.map(pct).join(" ")}`
    + (channel.reference ? `; reference ${channel.reference.map(pct).join(" ")}` : "; no reference"));
  return svg;
}

// Every merged score of a channel; the ones the controller lists in `over` (its [drift]
// thresholds) are marked. swap names the channel it would be exchanged with.
const METRICS = [["psi", "PSI"], ["js", "JS"], ["ks", "KS"], ["scale", "scale"], ["swap", "swap"]];

function scores(channel) {
  if (channel.psi == null) {
    return el("span", { class: "scores", text: `${channel.samples.toLocaleString()} samples, not scored` });
  }
  const parts = METRICS.map(([metric, label]) => {
    const over = channel.over.includes(metric);
    const partner = metric === "swap" && channel.swap_with ? ` (with ${channel.swap_with})` : "";
    return el("span", {
      class: over ? "metric over" : "metric",
      "data-metric": metric,
      title: over ? `${label} is over the controller's ${metric}_threshold` : null,
      text: `${label} ${fmtNumber(channel[metric], 3)}${partner}`,
    });
  });
  return el("span", { class: "scores" }, ...parts.flatMap((part, i) => (i ? [" · ", part] : [part])));
}

function render(data) {
  const select = document.getElementById("fleet-drift-version");
  const keys = data.groups.map(key);
  if (!keys.includes(state.selected)) state.selected = keys[0] ?? "";
  select.replaceChildren(...(keys.length
    ? data.groups.map((g) => el("option", { value: key(g), text: `${g.model_name ?? "?"} ${g.model_version ?? "?"}` }))
    : [el("option", { value: "", text: "no drift reports" })]));
  select.value = state.selected;
  const group = data.groups.find((g) => key(g) === state.selected);
  const note = document.getElementById("fleet-drift-note");
  const summary = document.getElementById("fleet-drift-summary");
  const box = document.getElementById("fleet-drift-channels");
  const outputs = document.getElementById("fleet-drift-outputs");
  if (!group) {
    summary.textContent = "";
    note.textContent = "No drift report with raw counts in this range.";
    box.replaceChildren();
    outputs.textContent = "";
    return;
  }
  const over = group.channels.filter((c) => c.over.length).map((c) => c.name);
  summary.textContent = `(${group.reports} reports from ${group.devices.length} devices)`;
  note.textContent = group.scored
    ? (over.length ? `Over a threshold: ${over.join(", ")}.` : "Every channel within its thresholds.")
    : `Not scored: ${group.reason}`;
  if (group.skipped_reports) note.textContent += ` ${group.skipped_reports} reports did not fit and were left out.`;
  box.replaceChildren(...group.channels.map((c) => el("figure",
    { class: c.over.length ? "histogram over" : "histogram", "data-channel": c.name },
    el("figcaption", {}, el("strong", { text: c.name }), scores(c)),
    histogram(c))));
  outputs.textContent = group.outputs
    ? `Predicted classes (${group.outputs.windows.toLocaleString()} windows): `
      + group.outputs.labels.map((l, i) => `${l} ${group.outputs.classes[i].toLocaleString()}`).join(", ")
      + (group.outputs.class_psi == null ? "" : `; class PSI ${fmtNumber(group.outputs.class_psi, 3)}`)
    : "";
}

async function refresh() {
  try {
    render(await api(`/api/fleet/drift?since=${state.since}`));
  } catch (error) {
    if (error.status === 401) return;
    document.getElementById("fleet-drift-note").textContent = `Fleet drift could not be loaded: ${error.message}`;
  }
}

document.getElementById("fleet-drift-version").addEventListener("change", (e) => {
  state.selected = e.target.value;
  refresh();
});
document.getElementById("fleet-drift-since").addEventListener("change", (e) => {
  state.since = Number(e.target.value);
  refresh();
});
refresh();
setInterval(refresh, 15000);
