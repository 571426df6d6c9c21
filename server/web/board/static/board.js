// The production board's script: key handling, fragment fetching, live updates, operations.
// The key lives in sessionStorage and goes out as a bearer token on every fetch, the live stream
// included (Server-Sent Events read from a fetch body: EventSource cannot send headers).
"use strict";

const API = document.body.dataset.api;
const KEY = "movie-orchestrator.board.key";
const $ = (id) => document.getElementById(id);
let who = null;
let streamAbort = null;
let refreshTimer = null;
const blobs = new Map();

function key() { return sessionStorage.getItem(KEY) || ""; }

function notice(text, isError) {
  const n = $("notice");
  n.textContent = text;
  n.className = isError ? "notice error" : "notice";
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + key() }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  if (response.status === 401 || response.status === 429) {
    const body = await response.json().catch(() => ({}));
    logout(body.message || "The key was refused.");
    throw new Error("unauthorized");
  }
  return response;
}

function logout(message) {
  sessionStorage.removeItem(KEY);
  who = null;
  if (streamAbort) streamAbort.abort();
  for (const id of ["who", "live", "forget", "list-view", "detail-view"]) $(id).hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("key").focus();
}

async function login() {
  const response = await api(API + "/whoami");
  who = await response.json();
  $("login").hidden = true;
  $("who").hidden = false;
  $("who").textContent = `${who.name} · role ${who.role} · projects ${who.projects.join(", ")}`;
  $("forget").hidden = false;
  startStream();
  await route();
}

// Replace only the sections whose HTML changed, so a playing audio player or the focused button
// survives an update; focus is put back on the element with the same id.
function swap(container, html) {
  const incoming = document.createElement("template");
  incoming.innerHTML = html;
  const fresh = incoming.content;
  const sections = fresh.querySelectorAll("[data-section]");
  const root = container.firstElementChild;
  if (!sections.length || !root || root.dataset.workflow !== (fresh.firstElementChild || {}).dataset?.workflow) {
    container.replaceChildren(fresh);
    loadProtected(container);
    return;
  }
  const focused = document.activeElement && document.activeElement.id;
  const status = fresh.firstElementChild.dataset.status;
  // Sections are replaced, not edited, so a screen reader hears of a new status through the notice.
  if (root.dataset.status !== status) notice(`The production is now ${status.replace("_", " ")}.`);
  root.dataset.status = status;
  for (const section of sections) {
    const old = root.querySelector("#" + section.id);
    if (!old) { root.appendChild(section); continue; }
    if (old.innerHTML === section.innerHTML) continue;
    const open = [...old.querySelectorAll("details")].map((d) => d.open);
    old.replaceWith(section);
    section.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
    loadProtected(section);
  }
  if (focused && document.activeElement !== $(focused) && $(focused)) $(focused).focus();
}

// Files of the board need the key too: fetch them and show them from blob URLs.
function loadProtected(scope) {
  for (const el of scope.querySelectorAll("[data-src],[data-href]")) {
    const url = el.dataset.src || el.dataset.href;
    const apply = (blobUrl) => { if (el.dataset.src) el.src = blobUrl; else el.href = blobUrl; };
    if (blobs.has(url)) { apply(blobs.get(url)); continue; }
    api(url).then((r) => (r.ok ? r.blob() : null)).then((b) => {
      if (!b) return;
      const blobUrl = URL.createObjectURL(b);
      blobs.set(url, blobUrl);
      apply(blobUrl);
    }).catch(() => {});
  }
}

function currentWorkflow() {
  const m = location.hash.match(/^#\/w\/(wf-[0-9a-f]{16})$/);
  return m ? m[1] : null;
}

async function route() {
  if (!who) return;
  const wid = currentWorkflow();
  $("list-view").hidden = !!wid;
  $("detail-view").hidden = !wid;
  if (wid) {
    const r = await api(`${API}/w/${wid}`);
    swap($("detail"), await r.text());
  } else {
    const form = new FormData($("filters"));
    const q = new URLSearchParams();
    for (const [k, v] of form) if (v) q.set(k, v);
    const r = await api(`${API}/productions?${q}`);
    swap($("list"), await r.text());
  }
}

function scheduleRefresh(delay = 150) {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    try { await route(); } catch (e) { /* the next change or reconnect refreshes again */ }
  }, delay);
}

async function startStream() {
  if (streamAbort) streamAbort.abort();
  const controller = new AbortController();
  streamAbort = controller;
  const live = $("live");
  while (!controller.signal.aborted && who) {
    try {
      const response = await api(API + "/stream", { signal: controller.signal });
      if (!response.ok || !response.body) throw new Error("stream refused");
      live.hidden = false;
      live.className = "live on";
      $("live-text").textContent = "live";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          onMessage(block);
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    live.className = "live off";
    $("live-text").textContent = "reconnecting";
    await new Promise((resolve) => setTimeout(resolve, 1000));
    scheduleRefresh(0);
  }
}

function onMessage(block) {
  let event = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (event !== "workflow" || !data) return;
  const change = JSON.parse(data);
  const wid = currentWorkflow();
  if (!wid || wid === change.workflow_id) scheduleRefresh();
}

function confirmDialog(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-ok").focus();
  });
}

async function post(path, body) {
  const r = await api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  const result = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(result.message || `refused (${r.status})`);
  return result;
}

const OP_TEXT = {
  pause: "Pause this production at its next step boundary?",
  resume: "Resume this production from its checkpoint?",
  cancel: "Cancel this production for good? Its outside jobs are cancelled too.",
  retry: "Run the failed step again?",
};

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-decide],button[data-op],button[data-fork]");
  if (!button) return;
  const wid = currentWorkflow();
  if (!wid) return;
  try {
    if (button.dataset.decide) {
      const id = button.dataset.decide;
      const from = button.dataset.choiceFrom;
      const choice = from ? $(from).value : button.dataset.choice;
      const comment = (document.querySelector(`[data-comment-for="${id}"]`) || {}).value || "";
      button.disabled = true;
      await post(`${API}/w/${wid}/decide`, { decision_id: id, choice, comment });
      notice(`Answered “${choice}”; the production resumes.`);
      $("main").focus();
    } else if (button.dataset.op) {
      const op = button.dataset.op;
      if (!(await confirmDialog(OP_TEXT[op]))) return;
      const result = await post(`${API}/w/${wid}/op/${op}`);
      notice(`${op}: the production is now ${result.status.replace("_", " ")}.`);
    } else if (button.dataset.fork) {
      if (!(await confirmDialog("Start a new production from this checkpoint?"))) return;
      const result = await post(`${API}/w/${wid}/fork`, { checkpoint_id: button.dataset.fork });
      notice(`Forked: ${result.workflow_id}.`);
      location.hash = `#/w/${result.workflow_id}`;
    }
  } catch (e) {
    if (e.message !== "unauthorized") notice(e.message, true);
    button.disabled = false;
  }
  scheduleRefresh(0);
});

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("key").value.trim());
  $("key").value = "";
  try { await login(); $("main").focus(); } catch (e) { /* logout() said why */ }
});
$("forget").addEventListener("click", () => logout("Key forgotten."));
$("filters").addEventListener("input", () => scheduleRefresh(0));
$("filters").addEventListener("submit", (event) => event.preventDefault());
window.addEventListener("hashchange", () => { notice(""); route().catch(() => {}); });

// A link may carry the key in its fragment (make demo prints one): take it, then drop it from the URL.
(function start() {
  const m = location.hash.match(/(?:^#|&)key=([^&]+)/);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    const rest = location.hash.replace(/(?:^#|&)key=[^&]+/, "").replace(/^&/, "");
    history.replaceState(null, "", location.pathname + (rest ? "#" + rest.replace(/^#?/, "") : "#/"));
  }
  if (key()) login().catch(() => {}); else logout("");
})();
