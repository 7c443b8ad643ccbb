// Fleet overview: totals, a filterable/sortable device table, live updates.
import {
  api, driftBadge, el, fmtAgo, fmtNumber, fmtPercent, liveUpdates, signedIn, throttle,
} from "/static/api.js";

const PAGE = 100;
const state = { sort: "device_id", order: "asc", offset: 0, search: "", online: "", version: "", drift: "" };
const table = document.getElementById("devices");
const body = table.querySelector("tbody");
let rows = [];

// Filters and sort live in the URL, so a reload or a shared link shows the same view.
function readUrl() {
  const q = new URLSearchParams(location.search);
  for (const key of Object.keys(state)) {
    if (q.has(key)) state[key] = key === "offset" ? Number(q.get(key)) || 0 : q.get(key);
  }
  document.getElementById("search").value = state.search;
  document.getElementById("filter-online").value = state.online;
  document.getElementById("filter-drift").value = state.drift;
}

function writeUrl() {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(state)) {
    if (value !== "" && !(key === "offset" && value === 0)) q.set(key, String(value));
  }
  history.replaceState(null, "", `${location.pathname}${q.toString() ? `?${q}` : ""}`);
}

function query() {
  const q = new URLSearchParams({ sort: state.sort, order: state.order, limit: String(PAGE), offset: String(state.offset) });
  if (state.search) q.set("search", state.search);
  if (state.online) q.set("online", state.online);
  if (state.version) q.set("model_version", state.version);
  if (state.drift) q.set("drifted", state.drift);
  return q;
}

function renderCounts(data) {
  const c = data.counts;
  document.getElementById("count-total").textContent = c.total;
  document.getElementById("count-online").textContent = c.online;
  document.getElementById("count-offline").textContent = c.offline;
  document.getElementById("count-drifted").textContent = c.drifted;
  document.getElementById("count-throughput").textContent = fmtNumber(c.throughput, 1);
  document.getElementById("count-fallback").textContent = fmtPercent(c.fallback_share);
  const select = document.getElementById("filter-version");
  const wanted = ["", ...Object.keys(data.model_versions)];
  if (state.version && !wanted.includes(state.version)) wanted.push(state.version);
  const have = [...select.options].map((o) => o.value);
  if (have.join("\n") !== wanted.join("\n")) {
    select.replaceChildren(...wanted.map((v) => el("option", {
      value: v,
      text: v === "" ? "all" : `${v || "(none)"} (${data.model_versions[v] ?? 0})`,
    })));
  }
  select.value = state.version;
}

function row(d) {
  const link = el("a", { href: `/static/device.html?id=${encodeURIComponent(d.device_id)}`, text: d.device_id });
  const model = d.model_name ? `${d.model_name} ${d.model_version || ""}` : d.model_version || "–";
  return el("tr", { "data-device": d.device_id, "data-online": String(d.online) },
    el("th", { scope: "row" }, link),
    el("td", {}, el("span", { class: `badge status ${d.online ? "online" : "offline"}`, text: d.online ? "online" : "offline" })),
    el("td", { text: model }),
    el("td", { class: "num", "data-throughput": String(d.throughput ?? 0), text: fmtNumber(d.throughput, 2) }),
    el("td", { class: "num", text: fmtNumber(d.p95_latency_ms, 2) }),
    el("td", { class: "num", text: fmtPercent(d.fallback_share) }),
    el("td", { class: "num cloud-share", "data-cloud-for": d.device_id, text: "–" }),
    el("td", { class: "num", "data-results": String(d.results_recent), text: d.results_recent.toLocaleString() }),
    el("td", { text: d.top_label || "–" }),
    el("td", {}, el("span", driftBadge(d.drifted, d.drift_at, d.drift_score))),
    el("td", { class: "last-seen", "data-ts": String(d.last_seen), text: fmtAgo(d.last_seen) }),
  );
}

function renderTable(data) {
  rows = data.devices;
  body.replaceChildren(...rows.map(row));
  document.dispatchEvent(new Event("devices-rendered")); // fallback.js fills the cloud share cells
  table.setAttribute("aria-busy", "false");
  document.getElementById("matched").textContent = `(${data.matched} of ${data.counts.total} match)`;
  document.getElementById("empty").hidden = data.matched > 0;
  const last = Math.min(data.offset + data.devices.length, data.matched);
  document.getElementById("page-info").textContent = data.matched
    ? `${data.offset + 1}–${last} of ${data.matched}` : "";
  document.getElementById("prev").disabled = data.offset === 0;
  document.getElementById("next").disabled = last >= data.matched;
  for (const th of table.querySelectorAll("th[data-sort]")) {
    const active = th.dataset.sort === state.sort;
    if (active) th.setAttribute("aria-sort", state.order === "asc" ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

let generation = 0;
async function refresh() {
  const mine = ++generation;
  try {
    const data = await api(`/api/dashboard/overview?${query()}`);
    if (mine !== generation) return; // a newer request (filter change) already answered
    renderCounts(data);
    renderTable(data);
    document.getElementById("load-error").hidden = true;
  } catch (error) {
    if (error.status === 401) return;
    const box = document.getElementById("load-error");
    box.textContent = `Could not load the fleet: ${error.message}`;
    box.hidden = false;
  }
}

const refreshSoon = throttle(refresh, 1500);

function changed() {
  state.offset = 0;
  writeUrl();
  refresh();
}

// A status flip arrives in the stream before the next table fetch: show it at once.
function applyStatus(status) {
  for (const [id, online] of Object.entries(status || {})) {
    const tr = body.querySelector(`tr[data-device="${CSS.escape(id)}"]`);
    if (!tr) continue;
    tr.dataset.online = String(online);
    const badge = tr.querySelector(".badge.status");
    badge.className = `badge status ${online ? "online" : "offline"}`;
    badge.textContent = online ? "online" : "offline";
  }
}

function wire() {
  let typing = null;
  document.getElementById("search").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.search = event.target.value.trim();
      changed();
    }, 250);
  });
  document.getElementById("filters").addEventListener("submit", (event) => event.preventDefault());
  document.getElementById("filter-online").addEventListener("change", (e) => { state.online = e.target.value; changed(); });
  document.getElementById("filter-version").addEventListener("change", (e) => { state.version = e.target.value; changed(); });
  document.getElementById("filter-drift").addEventListener("change", (e) => { state.drift = e.target.value; changed(); });
  for (const th of table.querySelectorAll("th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.sort;
      if (state.sort === key) state.order = state.order === "asc" ? "desc" : "asc";
      else {
        state.sort = key;
        // Figures read best largest first; names and versions A to Z.
        state.order = ["device_id", "model_version"].includes(key) ? "asc" : "desc";
      }
      changed();
    });
  }
  document.getElementById("prev").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - PAGE);
    writeUrl();
    refresh();
  });
  document.getElementById("next").addEventListener("click", () => {
    state.offset += PAGE;
    writeUrl();
    refresh();
  });
  setInterval(() => {
    const now = Date.now() / 1000;
    for (const cell of body.querySelectorAll("td.last-seen")) cell.textContent = fmtAgo(Number(cell.dataset.ts), now);
  }, 1000);
}

async function main() {
  readUrl();
  await signedIn();
  wire();
  await refresh();
  liveUpdates((payload) => {
    if (payload) applyStatus(payload.status);
    refreshSoon();
  });
}

main().catch((error) => {
  // 401: the page is already on its way to the login form.
  if (error.status !== 401) throw error;
});
