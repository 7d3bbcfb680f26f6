// memesearch pages: small progressive enhancements over server-rendered HTML.
// Every state change goes through the JSON API under /api with the CSRF header.
// Files: app.js (shared helpers, theme, search, meme page), manage.js (upload, folders, models).
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
  if (!response.ok) {
    // Errors are RFC 9457 problem details: `detail` is the sentence, `type` the kind (docs/API.md).
    const error = new Error(data.detail || `request failed (${response.status})`);
    error.data = data;  // type, hint, technical_details and an offered action (e.g. download a model)
    throw error;
  }
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

// Progress bars only move forward: a later, smaller figure (a new stage, a total that grew) never
// sends a bar the user saw at 80 % back to 20 %.
function forward(bar, value) {
  if (bar && value > Number(bar.value)) bar.value = value;
}

// ---- top bar: the navigation folds into a menu button on narrow screens
function setupMenu() {
  const button = $("#menu-toggle");
  const bar = $("#topbar");
  if (!button || !bar) return;
  button.addEventListener("click", () => {
    const open = !bar.classList.contains("open");
    bar.classList.toggle("open", open);
    button.setAttribute("aria-expanded", String(open));
  });
}

// ---- live regions (htmx polling) keep the user's place: an unchanged answer is not swapped in,
// and <details> the user opened (they carry ids) stay open across a swap.
const lastAnswer = new WeakMap();
function setupLiveRegions() {
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    const target = event.detail.target;
    const html = event.detail.serverResponse;
    if (!target || !target.hasAttribute("hx-trigger") || !/every /.test(target.getAttribute("hx-trigger"))) return;
    if (lastAnswer.get(target) === html) { event.detail.shouldSwap = false; return; }
    lastAnswer.set(target, html);
    target._openDetails = $$("details[open][id]", target).map((d) => d.id);
  });
  document.body.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail.target;
    for (const id of target._openDetails || []) {
      const details = document.getElementById(id);
      if (details) details.open = true;
    }
    target._openDetails = null;
  });
}

// ---- running bulk jobs in the header of every page (rendered by the server, followed live here)
const chipLabel = { describe: "Describing", index: "Indexing" };
function followJobChip(chip) {
  if (chip._source) return;
  const count = $(".job-count", chip);
  chip._source = watchRun(chip.dataset.jobChip, (run) => {
    count.textContent = `${run.done + run.failed}/${run.total}`;
  }, (run) => {
    chip.dataset.state = run ? run.state : "unknown";
    if (run) count.textContent = `${run.state}: ${run.done + run.failed}/${run.total}`;
    setTimeout(() => chip.remove(), 6000);
  });
}
function addJobChip(run) {
  const box = $("#job-chips");
  if (!box || !chipLabel[run.kind] || $(`[data-job-chip="${run.id}"]`, box)) return;
  const chip = $("#job-chip-template").content.firstElementChild.cloneNode(true);
  chip.dataset.jobChip = run.id;
  chip.dataset.kind = run.kind;
  chip.title = `Run ${run.id}: ${run.kind}${run.model ? ` with ${run.model}` : ""}`;
  $(".job-label", chip).textContent = chipLabel[run.kind];
  $(".job-count", chip).textContent = `${run.done + run.failed}/${run.total}`;
  box.appendChild(chip);
  followJobChip(chip);
}
async function refreshJobChips() {
  try {
    const { runs } = await api("GET", "/api/jobs?limit=20");
    runs.filter((r) => r.state === "queued" || r.state === "running").forEach(addJobChip);
  } catch (error) { /* the header is a convenience; the pages show errors themselves */ }
}
function setupJobChips() {
  $$("#job-chips [data-job-chip]").forEach(followJobChip);
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

// ---- search by image: choose a file, paste a screenshot (Ctrl+V) or drop a picture on the search page
function setupImageSearch() {
  const button = $("#image-search-button");
  const picker = $("#image-search-file");
  const panel = $("#image-query");
  const results = $("#results");
  if (!button || !picker || !panel || !results) return;
  const overlay = $("#drop-overlay");
  const status = $("#image-query-status");
  let preview = null;
  let current = 0;  // a newer picture (or a text search) wins over an answer still on its way

  async function searchBy(file) {
    const ticket = ++current;
    // A text search still on its way would land in #results over the picture's answer.
    const searchForm = $("#search-form");
    if (searchForm && window.htmx) window.htmx.trigger(searchForm, "htmx:abort");
    if (preview) URL.revokeObjectURL(preview);
    preview = URL.createObjectURL(file);
    const picture = $("#image-query-preview");
    picture.onload = () => { picture.hidden = false; };
    picture.onerror = () => { picture.hidden = true; };  // not a picture the browser can show either
    picture.src = preview;
    $("#image-query-name").textContent = file.name || "pasted picture";
    panel.hidden = false;
    panel.classList.remove("failed");
    status.textContent = "Looking for this meme and memes made from the same picture…";
    results.hidden = false;
    results.setAttribute("aria-busy", "true");
    results.innerHTML = "";  // the text results below are not answers to the picture
    const form = new FormData();
    form.append("image", file, file.name || "pasted-picture.png");
    try {
      const response = await fetch("/search/image", { method: "POST", body: form, headers: { "X-CSRF-Token": csrf() } });
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        throw new Error(data.detail || `search failed (${response.status})`);
      }
      const html = await response.text();
      if (ticket !== current) return;
      results.innerHTML = html;
      if (window.htmx) window.htmx.process(results);
      status.textContent = $("#no-results", results) ? "No match in your library."
        : "The meme it comes from first, then memes made from the same picture.";
    } catch (error) {
      if (ticket !== current) return;
      panel.classList.add("failed");
      status.textContent = error.message;
      results.innerHTML = "";
    } finally {
      if (ticket === current) results.removeAttribute("aria-busy");
    }
  }

  function leaveImageSearch() {
    current++;
    panel.hidden = true;
    results.removeAttribute("aria-busy");
  }

  button.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    if (picker.files.length) searchBy(picker.files[0]);
    picker.value = "";  // choosing the same file again searches again
  });
  // A pasted picture searches; pasted text goes into the search box as usual.
  document.addEventListener("paste", (event) => {
    const files = event.clipboardData ? Array.from(event.clipboardData.files) : [];
    const file = files.find((f) => f.type.startsWith("image/")) || files[0];
    if (!file) return;
    event.preventDefault();
    searchBy(file);
  });
  const carriesFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  let depth = 0;  // dragenter/dragleave fire for every child element crossed
  document.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    depth++;
    if (overlay) overlay.hidden = false;
  });
  document.addEventListener("dragleave", (event) => {
    if (!carriesFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (!depth && overlay) overlay.hidden = true;
  });
  document.addEventListener("dragover", (event) => { if (carriesFiles(event)) event.preventDefault(); });
  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth = 0;
    if (overlay) overlay.hidden = true;
    const files = Array.from(event.dataTransfer.files);
    const file = files.find((f) => f.type.startsWith("image/")) || files[0];
    if (file) searchBy(file);
  });
  // Back to words: clearing the picture (or typing) shows the text search again.
  $("#image-query-clear").addEventListener("click", () => {
    leaveImageSearch();
    const form = $("#search-form");
    if (form && window.htmx) window.htmx.trigger(form, "submit");
  });
  const form = $("#search-form");
  if (form) form.addEventListener("input", leaveImageSearch);
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

// ---- live progress of a run over server-sent events; one stream per run, however many parts of
// the page follow it (a browser holds only six connections per server).
const runStreams = new Map();
function watchRun(runId, onProgress, onEnd) {
  const key = String(runId);
  let stream = runStreams.get(key);
  if (!stream) {
    stream = { source: new EventSource(`/api/jobs/${key}/events`), listeners: [] };
    runStreams.set(key, stream);
    const finish = (run) => {
      stream.source.close();
      runStreams.delete(key);
      stream.listeners.forEach((l) => l.onEnd(run));
    };
    stream.source.addEventListener("progress", (event) => {
      const run = JSON.parse(event.data);
      stream.listeners.forEach((l) => l.onProgress(run));
    });
    stream.source.addEventListener("end", (event) => finish(JSON.parse(event.data)));
    stream.source.onerror = () => finish(null);
  }
  stream.listeners.push({ onProgress, onEnd });
  return stream.source;
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
    } catch (error) {
      const action = error.data && error.data.action;
      if (action && action.kind === "download") {
        // The model is not downloaded: one sentence and the download, instead of a spinning bar.
        status.textContent = `${error.message} `;
        const link = Object.assign(document.createElement("a"), {
          className: "button small", href: `/models?download=${encodeURIComponent(action.model)}`, textContent: action.label,
        });
        status.appendChild(link);
      } else toast(error.message, true);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupMenu();
  setupLiveRegions();
  setupJobChips();
  setupTheme();
  setupSearch();
  setupImageSearch();
  setupMeme();
});
