// Models page: downloads with live progress (bytes, %, speed, time left), cancel and resume,
// and the "model not ready" notice beside "Describe all undescribed".
"use strict";

function formatBytes(bytes) {
  if (bytes == null) return "?";
  const units = ["B", "kB", "MB", "GB"];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${units[unit]}`;
}

function formatSeconds(seconds) {
  if (seconds == null) return "";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s left`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min left`;
  return `${(seconds / 3600).toFixed(1)} h left`;
}

// One line a person can read: "12 MB of 138 MB · 9 % · 1.2 MB/s · 2 min left".
function progressText(state) {
  const parts = [];
  if (state.bytes_total) parts.push(`${formatBytes(state.bytes_done)} of ${formatBytes(state.bytes_total)}`);
  else if (state.bytes_done) parts.push(formatBytes(state.bytes_done));
  if (state.percent != null) parts.push(`${Math.floor(state.percent)} %`);
  if (state.rate_bps) parts.push(`${formatBytes(state.rate_bps)}/s`);
  if (state.eta_s != null && state.state === "running") parts.push(formatSeconds(state.eta_s));
  return parts.join(" · ") || "starting…";
}

const watching = new Set();

function pullRow(model) { return document.getElementById(`model-${model}`); }

function showPull(row, state) {
  const box = $(".pull-progress", row);
  const bar = $(".pull-bar", row);
  const status = $(".pull-status", row);
  const error = $(".pull-error", row);
  const details = $(".pull-details", row);
  const start = $("[data-pull]", row);
  row.dataset.pullState = state.state;
  error.hidden = true;
  error.classList.toggle("cancelled", state.state === "cancelled");
  details.hidden = true;
  if (state.state === "running") {
    box.hidden = false;
    start.hidden = true;
    if (state.percent != null) bar.value = state.percent; else bar.removeAttribute("value");
    status.textContent = progressText(state);
  } else if (state.state === "done") {
    box.hidden = false;
    bar.value = 100;
    status.textContent = `Downloaded ${formatBytes(state.bytes_total || state.bytes_done)}`;
    $("[data-pull-cancel]", row).hidden = true;
  } else {
    box.hidden = true;
    start.hidden = false;
    if (state.state === "cancelled") {
      start.textContent = "Resume download";
      error.textContent = `Cancelled at ${formatBytes(state.bytes_done)}; resuming continues from there.`;
      error.hidden = false;
    } else if (state.state === "failed") {
      error.textContent = state.error || "The download failed.";
      error.hidden = false;
      if (state.details) { $("pre", details).textContent = state.details; details.hidden = false; }
      start.textContent = "Try again";
    }
  }
}

async function watchPull(model) {
  if (watching.has(model)) return;
  watching.add(model);
  const row = pullRow(model);
  try {
    let state = await api("GET", `/api/models/${encodeURIComponent(model)}/pull`);
    while (state.state === "running") {
      showPull(row, state);
      await new Promise((resolve) => setTimeout(resolve, 500));
      state = await api("GET", `/api/models/${encodeURIComponent(model)}/pull`);
    }
    showPull(row, state);
    if (state.state === "done") setTimeout(() => location.replace("/models"), 800);
  } finally { watching.delete(model); }
}

async function startPull(model) {
  const row = pullRow(model);
  if (!row) { location.href = `/models?download=${encodeURIComponent(model)}`; return; }
  row.scrollIntoView({ block: "center" });
  try {
    showPull(row, await api("POST", `/api/models/${encodeURIComponent(model)}/pull`, {}));
    watchPull(model);
  } catch (e) { toast(e.message, true); }
}

// Called by the describe form (manage.js) when the server says the model is not ready.
function showModelNotReady(error) {
  const data = error && error.data;
  if (!data || !data.action || data.action.kind !== "download") return false;
  showNotice(data.detail, data.action.model, data.action.label);
  return true;
}

function showNotice(text, model, label) {
  const notice = $("#model-notice");
  if (!notice) return;
  $("#model-notice-text").textContent = text;
  const button = $("#model-notice-download");
  button.hidden = !model;
  button.textContent = label || "";
  button.dataset.model = model || "";
  notice.hidden = false;
}

function checkSelectedModel() {
  const option = $("#bulk-model").selectedOptions[0];
  const start = $("#bulk-start");
  if (!option || option.dataset.ready === "true") {
    $("#model-notice").hidden = true;
    start.disabled = false;
    return;
  }
  start.disabled = true;
  if (option.dataset.downloadable === "true") {
    showNotice(`The model ${option.value} is not downloaded yet.`, option.value, option.dataset.label);
  } else {
    showNotice(`The model ${option.value} cannot run on this machine; the Models table below says why.`, "", "");
  }
}

function setupDownloads() {
  if (!$("table.models")) return;
  document.addEventListener("click", async (event) => {
    const pull = event.target.closest("[data-pull]");
    const cancel = event.target.closest("[data-pull-cancel]");
    const notice = event.target.closest("#model-notice-download");
    if (pull) startPull(pull.dataset.pull);
    if (notice) startPull(notice.dataset.model);
    if (cancel) {
      try { await api("POST", `/api/models/${encodeURIComponent(cancel.dataset.pullCancel)}/pull/cancel`); }
      catch (e) { toast(e.message, true); }
    }
  });
  $("#bulk-model").addEventListener("change", checkSelectedModel);
  checkSelectedModel();
  // Downloads keep running while the page is closed: pick up the ones in progress.
  $$("tr[data-pull-state='running']").forEach((row) => watchPull(row.dataset.model));
  const wanted = new URLSearchParams(location.search).get("download");
  if (wanted && pullRow(wanted) && $("[data-pull]", pullRow(wanted))) startPull(wanted);
}

document.addEventListener("DOMContentLoaded", setupDownloads);
