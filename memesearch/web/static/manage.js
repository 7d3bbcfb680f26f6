// memesearch management pages: uploads, folders and models (uses the helpers of app.js).
"use strict";

// ---- uploads: drag-and-drop, paste, picker; one request per file for per-file progress
function uploadOne(file, row, onBytes) {
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("files", file, file.name || "pasted.png");
    const request = new XMLHttpRequest();
    request.open("POST", "/api/uploads?index=false");
    request.setRequestHeader("X-CSRF-Token", csrf());
    request.setRequestHeader("Accept", "application/json");
    const bar = $("progress", row);
    const status = $(".upload-status", row);
    request.upload.onprogress = (event) => {
      if (!event.lengthComputable) return;
      forward(bar, event.loaded / event.total);
      onBytes(file.size * (event.loaded / event.total));
    };
    request.onload = () => {
      let data = {};
      try { data = JSON.parse(request.responseText); } catch (e) {}
      const result = (data.files || [])[0];
      forward(bar, 1);
      onBytes(file.size);
      if (request.status === 200 && result && result.duplicate) {  // same bytes as a meme we have: nothing written
        row.classList.add("ok", "duplicate");
        status.textContent = `${result.message} `;
        if (result.existing_url) status.appendChild(Object.assign(document.createElement("a"), { href: result.existing_url, textContent: "open it" }));
        resolve(false);
      } else if (request.status === 200 && result && result.ok) {
        row.classList.add("ok");
        status.textContent = result.saved_as === result.name ? "uploaded" : `uploaded as ${result.saved_as}`;
        resolve(true);
      } else {
        row.classList.add("failed");
        status.textContent = (result && result.error) || data.detail || `failed (${request.status})`;
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
  // One bar for the whole batch: sending the bytes is its first half, indexing them the second.
  const overall = $("#upload-overall-bar");
  $("#upload-overall").hidden = false;
  overall.value = 0;
  const totalBytes = files.reduce((sum, f) => sum + (f.size || 0), 0) || 1;
  const sent = new Map();
  const onBytes = (file) => (bytes) => {
    sent.set(file, bytes);
    forward(overall, (50 * Array.from(sent.values()).reduce((a, b) => a + b, 0)) / totalBytes);
  };
  let saved = 0;
  // Three at a time: fast on a LAN, gentle on the server.
  const queue = files.map((file, i) => [file, rows[i]]);
  const workers = Array.from({ length: Math.min(3, queue.length) }, async () => {
    while (queue.length) {
      const [file, row] = queue.shift();
      if (await uploadOne(file, row, onBytes(file))) saved += 1;
    }
  });
  await Promise.all(workers);
  forward(overall, 50);
  if (!saved) { summary.textContent = "Nothing new was uploaded."; return; }
  summary.textContent = `${saved} of ${files.length} uploaded; indexing…`;
  try {
    const { run } = await api("POST", "/api/uploads/index");
    addJobChip(run);
    watchRun(run.id, (r) => {
      forward(overall, 50 + percentOf(r) / 2);
      summary.textContent = `${saved} of ${files.length} uploaded; indexing ${r.done + r.failed} of ${r.total}`;
    },
      (r) => { if (r && r.state === "done") forward(overall, 100); summary.textContent = r && r.state === "done" ? `${saved} of ${files.length} uploaded and indexed.` : `${saved} uploaded; indexing ${r ? r.state : "status unknown"}`; summary.dataset.state = r ? r.state : "unknown"; });
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
    const typing = document.activeElement && document.activeElement.matches("input");
    if (list && event.detail.elt === list && typing && list.contains(document.activeElement)) event.preventDefault();
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
      refreshJobChips();
    } catch (e) { error.textContent = e.message; error.hidden = false; }
  });
  document.addEventListener("click", async (event) => {
    const rescan = event.target.closest("[data-rescan]");
    const remove = event.target.closest("[data-remove-folder]");
    try {
      if (rescan) { await api("POST", `/api/folders/${rescan.dataset.rescan}/rescan`); toast("Rescan started"); changed(); refreshJobChips(); }
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

// ---- models page: bulk describe (SSE), cancel, retry, default, check (downloads: models.js)
function setupModels() {
  const form = $("#bulk-form");
  if (!form) return;
  const runsChanged = () => document.body.dispatchEvent(new Event("runs-changed"));
  let current = null;
  const show = (run) => {
    $("#bulk-progress").hidden = false;
    forward($("#bulk-bar"), percentOf(run));
    $("#bulk-percent").textContent = `${Math.round($("#bulk-bar").value)} %`;
    const rate = run.rate_per_s ? ` · ${run.rate_per_s.toFixed(1)}/s` : "";
    const eta = run.eta_s ? ` · ${Math.round(run.eta_s)} s left` : "";
    $("#bulk-detail").textContent = `${run.state}: ${run.done} done, ${run.failed} failed of ${run.total}${rate}${eta}`;
    $("#bulk-errors").replaceChildren(...run.errors.slice(0, 10).map((e) => Object.assign(document.createElement("li"), { textContent: `${e.path}: ${e.error}` })));
  };
  const follow = (run) => {
    if (!current || current.id !== run.id) $("#bulk-bar").value = 0;  // a new run starts from 0
    current = run;
    show(run);
    addJobChip(run);
    $("#bulk-cancel").hidden = false;
    watchRun(run.id, show, (final) => {
      if (final) show(final);
      $("#bulk-cancel").hidden = true;
      $("#bulk-progress").dataset.state = final ? final.state : "unknown";
      runsChanged();
    });
  };
  // Ask first, saying how many memes and about how long (measured here, or the model's typical time).
  const dialog = $("#bulk-confirm");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const estimate = await api("GET", `/api/jobs/estimate?model=${encodeURIComponent($("#bulk-model").value)}`);
      $("#bulk-estimate").textContent = estimate.text;
      $("#bulk-confirm-start").hidden = estimate.count === 0;
      dialog.dataset.model = estimate.model;
      dialog.returnValue = "";
      dialog.showModal();
    } catch (e) { toast(e.message, true); }
  });
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "start") return;
    try { follow(await api("POST", "/api/jobs", { kind: "describe", model: dialog.dataset.model })); runsChanged(); }
    catch (e) { if (!(window.showModelNotReady && showModelNotReady(e))) toast(e.message, true); }
  });
  // A run started before this page was (re)loaded: the server rendered its panel; follow it live.
  const going = $("#bulk-progress").dataset.runId;
  if (going) api("GET", `/api/jobs/${going}`).then(follow).catch(() => {});
  $("#bulk-cancel").addEventListener("click", async () => {
    if (current) { try { await api("POST", `/api/jobs/${current.id}/cancel`); } catch (e) { toast(e.message, true); } }
  });
  document.addEventListener("click", async (event) => {
    const cancel = event.target.closest("[data-cancel]");
    const retry = event.target.closest("[data-retry]");
    const makeDefault = event.target.closest("[data-default]");
    try {
      if (cancel) { await api("POST", `/api/jobs/${cancel.dataset.cancel}/cancel`); runsChanged(); }
      if (retry) { follow(await api("POST", `/api/jobs/${retry.dataset.retry}/retry`)); runsChanged(); }
      if (makeDefault) { await api("POST", "/api/models/default", { model: makeDefault.dataset.default }); location.reload(); }
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

document.addEventListener("DOMContentLoaded", () => {
  setupUpload();
  setupFolders();
  setupModels();
});
