// OTA campaigns: start one (admins), follow each device's state, roll a campaign back in one click.
import { api, el, signedIn } from "/static/api.js";

const body = document.querySelector("#campaigns tbody");
const errorBox = document.getElementById("load-error");
let admin = false;

function showError(error) {
  errorBox.hidden = false;
  errorBox.textContent = error.hint ? `${error.message} (${error.hint})` : error.message;
}

function deviceList(view) {
  const list = el("ul", { class: "campaign-devices" });
  for (const d of view.devices) {
    const outcome = d.rollback_command_id ? "rolled back" : d.outcome || (d.offer_id ? "offered" : "pending");
    list.append(
      el(
        "li",
        { "data-device": d.device_id },
        el("a", { href: `/static/device.html?id=${encodeURIComponent(d.device_id)}`, text: d.name || d.device_id }),
        ` · stage ${d.stage + 1} · `,
        el("span", { class: `badge ${d.outcome === "ok" ? "done" : d.outcome ? "failed" : "pending"}`, text: outcome }),
        d.state ? ` ${d.state}` : "",
        d.detail ? el("span", { class: "muted", text: ` ${d.detail}` }) : null,
      ),
    );
  }
  return list;
}

function row(view) {
  const c = view.campaign;
  const counts = Object.entries(view.counts).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ");
  const actions = el("td");
  if (admin && !["rolling_back", "rolled_back"].includes(c.status)) {
    const button = el("button", { type: "button", text: "Roll back", "data-rollback": c.campaign_id });
    button.addEventListener("click", async () => {
      if (!confirm(`Send rollback_model to every device that activated ${c.bundle_version}?`)) return;
      button.disabled = true;
      try {
        await api(`/api/ota/campaigns/${encodeURIComponent(c.campaign_id)}/rollback`, { method: "POST" });
        await refresh();
      } catch (error) {
        showError(error);
        button.disabled = false;
      }
    });
    actions.append(button);
  }
  return el(
    "tr",
    { "data-campaign": c.campaign_id },
    el("td", { text: c.campaign_id }),
    el("td", { text: `${c.bundle_name} ${c.bundle_version}` }),
    el("td", {}, el("span", { class: `badge campaign-${c.status}`, "data-status": c.status, text: c.status })),
    el("td", { text: `${c.stage + 1} of ${c.stages.length} (${c.stages.map((s) => `${s}%`).join(", ")})` }),
    el("td", {}, el("div", { text: counts }), deviceList(view)),
    el("td", { text: c.detail || "" }),
    actions,
  );
}

async function refresh() {
  const views = await api("/api/ota/campaigns");
  body.replaceChildren(...views.map(row));
  document.getElementById("empty").hidden = views.length > 0;
}

async function loadBundles() {
  const bundles = await api("/api/ota/bundles");
  const select = document.getElementById("bundle");
  select.replaceChildren(
    ...bundles.map((b) => el("option", { value: `${b.name}@${b.version}`, text: `${b.name} ${b.version}` })),
  );
}

function wireForm() {
  const form = document.getElementById("new-campaign");
  const result = document.getElementById("new-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const kind = document.getElementById("target-kind").value;
    const target = document.getElementById("target").value.trim();
    const request = {
      bundle: document.getElementById("bundle").value,
      stages: document.getElementById("stages").value.split(",").map((s) => Number(s.trim())),
      max_failures: Number(document.getElementById("max-failures").value || 0),
      shadow_s: Number(document.getElementById("shadow").value || 0),
    };
    if (kind === "all") request.all = true;
    else if (kind === "tag") request.tag = target;
    else request.devices = target.split(",").map((s) => s.trim()).filter(Boolean);
    result.textContent = "starting…";
    try {
      const view = await api("/api/ota/campaigns", { method: "POST", body: request });
      result.textContent = `campaign ${view.campaign.campaign_id} started`;
      await refresh();
    } catch (error) {
      result.textContent = error.hint ? `${error.message} (${error.hint})` : error.message;
    }
  });
}

async function main() {
  const me = await signedIn();
  admin = me.role === "admin";
  if (admin) {
    document.getElementById("new-section").hidden = false;
    wireForm();
    await loadBundles();
  }
  await refresh();
  setInterval(() => refresh().catch(showError), 2000);
}

main().catch(showError);
