// memesearch pages: small progressive enhancements over server-rendered HTML.
// Every state change goes through the JSON API under /api with the CSRF header.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

async function api(method, url, body) {
  const options = { method, headers: { "X-CSRF-Token": csrf(), Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `request failed (${response.status})`);
  return data;
}

function toast(message, isError) {
  const box = $("#toast");
  if (!box) return;
  box.textContent = message;
  box.className = isError ? "show error" : "show";
  clearTimeout(box._timer);
  box._timer = setTimeout(() => { box.className = ""; }, 3500);
}

// ---- theme: follows the system until the user picks one, then remembers it
function currentTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen) return chosen;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}
function setupTheme() {
  const button = $("#theme-toggle");
  if (!button) return;
  button.addEventListener("click", () => {
    const next = currentTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try { localStorage.setItem("memesearch-theme", next); } catch (e) {}
  });
}

// ---- search page: view toggle, keyboard navigation
function setupSearch() {
  const hits = () => $("#hits");
  const input = $("#q");
  const stored = (() => { try { return localStorage.getItem("memesearch-view"); } catch (e) { return null; } })();
  const applyView = (view) => {
    document.body.dataset.view = view;
    $$("[data-view]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.view === view)));
  };
  applyView(stored || "grid");
  $$("[data-view]").forEach((b) => b.addEventListener("click", () => {
    applyView(b.dataset.view);
    try { localStorage.setItem("memesearch-view", b.dataset.view); } catch (e) {}
  }));

  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (event.key === "/" && !typing && input) {
      event.preventDefault();
      input.focus();
      input.select();
      return;
    }
    const list = hits();
    if (!list || (typing && document.activeElement !== input)) return;
    const items = $$(".hit", list);
    if (!items.length) return;
    let index = items.findIndex((item) => item.classList.contains("selected"));
    const columns = document.body.dataset.view === "list" ? 1 : Math.max(1, Math.round(list.clientWidth / items[0].offsetWidth));
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns };
    if (event.key in moves && !(typing && (event.key === "ArrowLeft" || event.key === "ArrowRight"))) {
      event.preventDefault();
      index = index < 0 ? 0 : Math.min(items.length - 1, Math.max(0, index + moves[event.key]));
      items.forEach((item) => item.classList.remove("selected"));
      items[index].classList.add("selected");
      items[index].focus({ preventScroll: true });
      items[index].scrollIntoView({ block: "nearest" });
      if (typing) input.blur();
    } else if (event.key === "Enter" && index >= 0 && !typing) {
      event.preventDefault();
      location.href = `/memes/${items[index].dataset.id}`;
    } else if (event.key === "Enter" && typing && document.activeElement === input && items.length && index >= 0) {
      event.preventDefault();
      location.href = `/memes/${items[index].dataset.id}`;
    }
  });
  // Keep the address bar shareable without reloading the page.
  document.body.addEventListener("htmx:afterRequest", (event) => {
    const form = $("#search-form");
    if (!form || event.detail.elt !== form) return;
    const params = new URLSearchParams(new FormData(form));
    for (const [key, value] of Array.from(params.entries())) if (!value) params.delete(key);
    history.replaceState(null, "", params.toString() ? `/?${params}` : "/");
  });
}

// ---- copy an image to the clipboard (PNG: the one image type browsers accept)
async function copyImage(memeId) {
  try {
    const blob = await fetch(`/files/${memeId}/image`).then((r) => { if (!r.ok) throw new Error("image not available"); return r.blob(); });
    const bitmap = await createImageBitmap(blob);
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    const png = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    await navigator.clipboard.write([new ClipboardItem({ "image/png": png })]);
    toast("Image copied");
  } catch (error) {
    toast(`Could not copy: ${error.message}`, true);
  }
}
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (button) copyImage(button.dataset.copy);
});

// ---- live progress of a run over server-sent events
function watchRun(runId, onProgress, onEnd) {
  const source = new EventSource(`/api/jobs/${runId}/events`);
  source.addEventListener("progress", (event) => onProgress(JSON.parse(event.data)));
  source.addEventListener("end", (event) => { source.close(); onEnd(JSON.parse(event.data)); });
  source.onerror = () => { source.close(); onEnd(null); };
  return source;
}
const percentOf = (run) => (run.total ? Math.round((100 * (run.done + run.failed)) / run.total) : 100);

// ---- meme page
function setupMeme() {
  const page = $(".meme-page");
  if (!page) return;
  const id = page.dataset.memeId;
  $("#description-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PATCH", `/api/memes/${id}`, { user_description: $("#user-description").value });
      $("#description-status").textContent = "Saved";
      toast("Description saved");
    } catch (error) { toast(error.message, true); }
  });
  const renderTags = (tags) => {
    $("#tag-list").innerHTML = "";
    for (const tag of tags) {
      const li = document.createElement("li");
      li.className = "tag";
      li.textContent = `#${tag} `;
      const remove = document.createElement("button");
      Object.assign(remove, { type: "button", className: "tag-remove", textContent: "×" });
      remove.dataset.tag = tag;
      remove.setAttribute("aria-label", `Remove tag ${tag}`);
      li.appendChild(remove);
      $("#tag-list").appendChild(li);
    }
  };
  $("#tag-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("#tag-input").value.trim();
    if (!name) return;
    try {
      renderTags((await api("PATCH", `/api/memes/${id}`, { add_tags: [name] })).tags);
      $("#tag-input").value = "";
    } catch (error) { toast(error.message, true); }
  });
  $("#tag-list").addEventListener("click", async (event) => {
    const button = event.target.closest("[data-tag]");
    if (!button) return;
    try { renderTags((await api("PATCH", `/api/memes/${id}`, { remove_tags: [button.dataset.tag] })).tags); }
    catch (error) { toast(error.message, true); }
  });
  let suggestTimer;
  $("#tag-input").addEventListener("input", () => {
    clearTimeout(suggestTimer);
    suggestTimer = setTimeout(async () => {
      const prefix = $("#tag-input").value.trim();
      const data = await api("GET", `/api/tags?limit=20&prefix=${encodeURIComponent(prefix)}`).catch(() => ({ tags: [] }));
      $("#tag-suggestions").replaceChildren(...data.tags.map((t) => Object.assign(document.createElement("option"), { value: t.name })));
    }, 150);
  });
  $("#regenerate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const bar = $("#regenerate-progress");
    const status = $("#regenerate-status");
    try {
      const run = await api("POST", `/api/memes/${id}/describe`, { model: $("#regenerate-model").value });
      bar.hidden = false;
      status.textContent = "queued";
      watchRun(run.id, (r) => { bar.value = percentOf(r); status.textContent = r.state; }, (r) => {
        if (r && r.state === "done" && !r.failed) location.reload();
        else status.textContent = r && r.errors.length ? `failed: ${r.errors[0].error}` : "failed";
      });
    } catch (error) { toast(error.message, true); }
  });
}

// ---- uploads: drag-and-drop, paste, picker; one request per file for per-file progress
function uploadOne(file, row) {
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("files", file, file.name || "pasted.png");
    const request = new XMLHttpRequest();
    request.open("POST", "/api/uploads?index=false");
    request.setRequestHeader("X-CSRF-Token", csrf());
    request.setRequestHeader("Accept", "application/json");
    const bar = $("progress", row);
    const status = $(".upload-status", row);
    request.upload.onprogress = (event) => { if (event.lengthComputable) bar.value = event.loaded / event.total; };
    request.onload = () => {
      let data = {};
      try { data = JSON.parse(request.responseText); } catch (e) {}
      const result = (data.files || [])[0];
      bar.value = 1;
      if (request.status === 200 && result && result.ok) {
        row.classList.add("ok");
        status.textContent = result.saved_as === result.name ? "uploaded" : `uploaded as ${result.saved_as}`;
        resolve(true);
      } else {
        row.classList.add("failed");
        status.textContent = (result && result.error) || data.error || `failed (${request.status})`;
        resolve(false);
      }
    };
    request.onerror = () => { row.classList.add("failed"); status.textContent = "network error"; resolve(false); };
    request.send(form);
  });
}

async function uploadFiles(files) {
  const zone = $("#dropzone");
  const limit = Number(zone.dataset.maxFiles);
  const list = $("#upload-list");
  const summary = $("#upload-summary");
  files = Array.from(files).filter((f) => f && f.size !== undefined);
  if (!files.length) return;
  if (files.length > limit) {
    toast(`At most ${limit} files at a time: uploading the first ${limit}`, true);
    files = files.slice(0, limit);
  }
  const rows = files.map((file) => {
    const row = document.createElement("li");
    row.className = "upload-row";
    row.innerHTML = '<span class="upload-name"></span><progress max="1" value="0"></progress><span class="upload-status muted">waiting</span>';
    $(".upload-name", row).textContent = file.name || "pasted image";
    list.appendChild(row);
    return row;
  });
  summary.textContent = `Uploading ${files.length} file(s)…`;
  let saved = 0;
  // Three at a time: fast on a LAN, gentle on the server.
  const queue = files.map((file, i) => [file, rows[i]]);
  const workers = Array.from({ length: Math.min(3, queue.length) }, async () => {
    while (queue.length) {
      const [file, row] = queue.shift();
      if (await uploadOne(file, row)) saved += 1;
    }
  });
  await Promise.all(workers);
  if (!saved) { summary.textContent = "Nothing was uploaded."; return; }
  summary.textContent = `${saved} of ${files.length} uploaded; indexing…`;
  try {
    const { run } = await api("POST", "/api/uploads/index");
    watchRun(run.id, (r) => { summary.textContent = `${saved} of ${files.length} uploaded; indexing ${percentOf(r)} %`; },
      (r) => { summary.textContent = r && r.state === "done" ? `${saved} of ${files.length} uploaded and indexed.` : `${saved} uploaded; indexing ${r ? r.state : "status unknown"}`; summary.dataset.state = r ? r.state : "unknown"; });
  } catch (error) { summary.textContent = error.message; }
}

function setupUpload() {
  const zone = $("#dropzone");
  if (!zone) return;
  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => { event.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (event) => { event.preventDefault(); uploadFiles(event.dataTransfer.files); });
  $("#file-picker").addEventListener("change", (event) => { uploadFiles(event.target.files); event.target.value = ""; });
  document.addEventListener("paste", (event) => {
    const files = Array.from(event.clipboardData.items).filter((i) => i.kind === "file").map((i) => i.getAsFile());
    if (files.length) { event.preventDefault(); uploadFiles(files); }
  });
}

// ---- folders page
function setupFolders() {
  const form = $("#folder-form");
  if (!form) return;
  const changed = () => document.body.dispatchEvent(new Event("folders-changed"));
  // The list refreshes itself every few seconds; never while someone is typing in it.
  document.body.addEventListener("htmx:beforeRequest", (event) => {
    const list = $("#folder-list");
    if (list && event.detail.elt === list && list.contains(document.activeElement)) event.preventDefault();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("#folder-error");
    error.hidden = true;
    try {
      await api("POST", "/api/folders", { path: $("#folder-path").value.trim(), auto_scan_minutes: Number($("#folder-interval").value || 0) });
      $("#folder-path").value = "";
      toast("Folder added; scanning");
      changed();
    } catch (e) { error.textContent = e.message; error.hidden = false; }
  });
  document.addEventListener("click", async (event) => {
    const rescan = event.target.closest("[data-rescan]");
    const remove = event.target.closest("[data-remove-folder]");
    try {
      if (rescan) { await api("POST", `/api/folders/${rescan.dataset.rescan}/rescan`); toast("Rescan started"); changed(); }
      if (remove && confirm("Remove this folder? Its files stay on disk; its memes are hidden until it is added again.")) {
        await api("DELETE", `/api/folders/${remove.dataset.removeFolder}`); changed();
      }
    } catch (e) { toast(e.message, true); }
  });
  document.addEventListener("change", async (event) => {
    const input = event.target.closest("[data-interval]");
    if (!input) return;
    try { await api("PATCH", `/api/folders/${input.dataset.interval}`, { auto_scan_minutes: Number(input.value) }); toast("Auto-scan saved"); }
    catch (e) { toast(e.message, true); }
  });
}

// ---- models page: bulk describe (SSE), cancel, retry, default, pull, check
function setupModels() {
  const form = $("#bulk-form");
  if (!form) return;
  const runsChanged = () => document.body.dispatchEvent(new Event("runs-changed"));
  let current = null;
  const show = (run) => {
    $("#bulk-progress").hidden = false;
    const percent = percentOf(run);
    $("#bulk-bar").value = percent;
    $("#bulk-percent").textContent = `${percent} %`;
    const rate = run.rate_per_s ? ` · ${run.rate_per_s.toFixed(1)}/s` : "";
    const eta = run.eta_s ? ` · ${Math.round(run.eta_s)} s left` : "";
    $("#bulk-detail").textContent = `${run.state}: ${run.done} done, ${run.failed} failed of ${run.total}${rate}${eta}`;
    $("#bulk-errors").replaceChildren(...run.errors.slice(0, 10).map((e) => Object.assign(document.createElement("li"), { textContent: `${e.path}: ${e.error}` })));
  };
  const follow = (run) => {
    current = run;
    show(run);
    $("#bulk-cancel").hidden = false;
    watchRun(run.id, show, (final) => {
      if (final) show(final);
      $("#bulk-cancel").hidden = true;
      $("#bulk-progress").dataset.state = final ? final.state : "unknown";
      runsChanged();
    });
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try { follow(await api("POST", "/api/jobs", { kind: "describe", model: $("#bulk-model").value })); runsChanged(); }
    catch (e) { toast(e.message, true); }
  });
  $("#bulk-cancel").addEventListener("click", async () => {
    if (current) { try { await api("POST", `/api/jobs/${current.id}/cancel`); } catch (e) { toast(e.message, true); } }
  });
  document.addEventListener("click", async (event) => {
    const cancel = event.target.closest("[data-cancel]");
    const retry = event.target.closest("[data-retry]");
    const makeDefault = event.target.closest("[data-default]");
    const pull = event.target.closest("[data-pull]");
    try {
      if (cancel) { await api("POST", `/api/jobs/${cancel.dataset.cancel}/cancel`); runsChanged(); }
      if (retry) { follow(await api("POST", `/api/jobs/${retry.dataset.retry}/retry`)); runsChanged(); }
      if (makeDefault) { await api("POST", "/api/models/default", { model: makeDefault.dataset.default }); location.reload(); }
      if (pull) pullModel(pull);
    } catch (e) { toast(e.message, true); }
  });
  $("#check-start").addEventListener("click", async () => {
    try { await api("POST", "/api/models/check"); } catch (e) { toast(e.message, true); return; }
    const box = $("#check-result");
    const poll = async () => {
      const state = (await api("GET", "/api/models/check")).state;
      box.innerHTML = await fetch("/models?part=check").then((r) => r.text());
      box.dataset.state = state;
      if (state === "running") setTimeout(poll, 1000);
    };
    poll();
  });
}

async function pullModel(button) {
  const row = button.closest("tr");
  const bar = $(".pull-bar", row);
  const status = $(".pull-status", row);
  const model = button.dataset.pull;
  button.disabled = true;
  bar.hidden = false;
  let state = await api("POST", `/api/models/${model}/pull`, {});
  while (state.state === "running") {
    bar.max = state.files_total || 1;
    bar.value = state.files_present;
    status.textContent = ` ${state.files_present}/${state.files_total} files`;
    await new Promise((r) => setTimeout(r, 1000));
    state = await api("GET", `/api/models/${model}/pull`);
  }
  button.disabled = false;
  if (state.state === "done") location.reload();
  else { bar.hidden = true; status.textContent = ` ${state.error}`; status.classList.add("error-message"); }
}

document.addEventListener("DOMContentLoaded", () => {
  setupTheme();
  setupSearch();
  setupMeme();
  setupUpload();
  setupFolders();
  setupModels();
});
