// The dashboard's access to the controller API: auth, JSON requests, live updates, formatting.

const TOKEN_KEY = "edgefleet.token";
const CSRF_COOKIE = "edgefleet_csrf";
const CSRF_HEADER = "X-Edgefleet-CSRF";

export class ApiError extends Error {
  constructor(status, message, hint) {
    super(message);
    this.status = status;
    this.hint = hint;
  }
}

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function useToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export function toLogin() {
  const next = location.pathname + location.search;
  location.replace(`/static/login.html?next=${encodeURIComponent(next)}`);
}

// JSON request; a 401 sends the page to the login form (the session expired or was never made).
export async function api(path, { method = "GET", body, redirect = true } = {}) {
  const headers = { Accept: "application/json" };
  const token = storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  else if (method !== "GET") headers[CSRF_HEADER] = cookie(CSRF_COOKIE);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && redirect) {
    useToken(null);
    toLogin();
    throw new ApiError(401, "authentication required");
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const message = (data && data.message) || `${method} ${path} answered HTTP ${response.status}`;
    throw new ApiError(response.status, message, data && data.hint);
  }
  return data;
}

// Who is signed in; fills the header's name and wires the sign-out button.
export async function signedIn() {
  const me = await api("/api/auth/me");
  const who = document.getElementById("who");
  if (who) who.textContent = `${me.name} (${me.role})`;
  const out = document.getElementById("logout");
  if (out) {
    out.hidden = false;
    out.addEventListener("click", async () => {
      if (!storedToken()) await api("/api/auth/logout", { method: "POST", redirect: false }).catch(() => {});
      useToken(null);
      location.replace("/static/login.html");
    });
  }
  return me;
}

// At most one call per `ms`; calls in between are folded into one trailing call.
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (wait <= 0 && !timer) {
      last = Date.now();
      fn();
    } else if (!timer) {
      timer = setTimeout(() => {
        timer = null;
        last = Date.now();
        fn();
      }, Math.max(wait, 0));
    }
  };
}

// Live updates: Server-Sent Events from /api/stream; polling when SSE is not possible (bearer
// tokens cannot ride on EventSource) or fails. onChange(payload) gets the `fleet` event data, or
// null for "refresh everything" (first connect, each poll).
export function liveUpdates(onChange, { pollMs = 5000, retrySseMs = 30000 } = {}) {
  const badge = document.getElementById("live");
  let source = null;
  let pollTimer = null;
  let retryTimer = null;
  const mode = (name, text) => {
    if (!badge) return;
    badge.dataset.mode = name;
    badge.textContent = text;
  };
  const poll = () => {
    if (pollTimer) return;
    mode("polling", `polling every ${Math.round(pollMs / 1000)} s`);
    pollTimer = setInterval(() => onChange(null), pollMs);
  };
  const stopPolling = () => {
    clearInterval(pollTimer);
    pollTimer = null;
  };
  const connect = () => {
    retryTimer = null;
    if (!window.EventSource || storedToken()) {
      poll();
      return;
    }
    source = new EventSource("/api/stream");
    source.addEventListener("hello", () => {
      stopPolling();
      mode("live", "live");
      onChange(null);
    });
    source.addEventListener("fleet", (event) => {
      let payload = null;
      try {
        payload = JSON.parse(event.data);
      } catch {
        payload = null;
      }
      onChange(payload);
    });
    source.onerror = () => {
      source.close();
      source = null;
      poll();
      onChange(null);
      if (!retryTimer) retryTimer = setTimeout(connect, retrySseMs);
    };
  };
  connect();
  return {
    stop() {
      if (source) source.close();
      stopPolling();
      clearTimeout(retryTimer);
    },
  };
}

// --- formatting --------------------------------------------------------------------------------

export function fmtNumber(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function fmtPercent(share, digits = 1) {
  if (share === null || share === undefined) return "–";
  return `${fmtNumber(share * 100, digits)} %`;
}

export function fmtAgo(ts, now = Date.now() / 1000) {
  if (!ts) return "never";
  const s = Math.max(0, Math.round(now - ts));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function fmtTime(ts) {
  return new Date(ts * 1000).toLocaleString(undefined, { hour12: false });
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// A device's drift badge. No report at all must not read as "stable": drift detection may be off,
// not yet shipped on that device, or its reports lost, and an operator would be falsely reassured.
export function driftBadge(drifted, reportedAt, score, driftedText = "drifted") {
  if (reportedAt === null || reportedAt === undefined) {
    return { class: "badge nodata", text: "no drift data", title: "this device has never sent a drift report" };
  }
  const when = `latest drift report ${fmtTime(reportedAt)}`;
  if (drifted) {
    const shown = score !== null && score !== undefined ? ` (${fmtNumber(score, 2)})` : "";
    return { class: "badge drifted", text: `${driftedText}${shown}`, title: when };
  }
  return { class: "badge not-drifted", text: "not drifted", title: when };
}
