import { api, useToken } from "/static/api.js";

const errorBox = document.getElementById("login-error");

// Only same-site paths: a crafted ?next= must not send the user elsewhere.
function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return next.startsWith("/") && !next.startsWith("//") ? next : "/static/index.html";
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

document.getElementById("password-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  const username = document.getElementById("username").value.trim();
  const password = document.getElementById("password").value;
  if (!username || !password) {
    showError("Enter a user name and a password.");
    return;
  }
  useToken(null);
  try {
    await api("/api/auth/login", { method: "POST", body: { username, password }, redirect: false });
    location.replace(nextPage());
  } catch (error) {
    showError(error.status === 401 ? "Wrong user name or password." : `Sign-in failed: ${error.message}`);
  }
});

document.getElementById("token-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  const token = document.getElementById("token").value.trim();
  if (!token) {
    showError("Paste an API token (edgefleet controller token create).");
    return;
  }
  useToken(token);
  try {
    await api("/api/auth/me", { redirect: false });
    location.replace(nextPage());
  } catch (error) {
    useToken(null);
    showError(error.status === 401 ? "That token is not valid." : `Sign-in failed: ${error.message}`);
  }
});
