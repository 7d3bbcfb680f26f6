// memesearch library care: confirmations, tag colours, and the search grid's select mode
// (bulk "Remove from library"). Uses api(), toast(), $ and $$ from app.js.
"use strict";

const ICON_CHECK = '<svg class="care-icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M5 12l5 5 9-10"/></svg>';
const ICON_SELECT = '<svg class="care-icon" viewBox="0 0 24 24" aria-hidden="true"><rect x="4" y="4" width="16" height="16" rx="3"/><path d="M8 12l3 3 5-6"/></svg>';
const ICON_TRASH = '<svg class="care-icon" viewBox="0 0 24 24" aria-hidden="true"><path d="M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13"/></svg>';

// ---- a confirmation dialog (native <dialog>: focus trap, Esc closes)
function confirmDialog(message, confirmLabel = "Confirm") {
  let dialog = $("#confirm-dialog");
  if (!dialog) {
    dialog = document.createElement("dialog");
    dialog.id = "confirm-dialog";
    dialog.className = "card";
    dialog.innerHTML = '<p class="confirm-message"></p><div class="row spread">' +
      '<button type="button" class="ghost" value="cancel">Cancel</button>' +
      '<button type="button" class="danger-fill" value="ok"></button></div>';
    document.body.appendChild(dialog);
  }
  $(".confirm-message", dialog).textContent = message;
  $('button[value="ok"]', dialog).textContent = confirmLabel;
  return new Promise((resolve) => {
    const done = (answer) => { dialog.close(); resolve(answer); };
    $('button[value="ok"]', dialog).onclick = () => done(true);
    $('button[value="cancel"]', dialog).onclick = () => done(false);
    dialog.oncancel = () => resolve(false);
    dialog.showModal();
    $('button[value="cancel"]', dialog).focus();
  });
}

// ---- forms that ask first (delete a tag, clean unused tags, remove the API key)
function setupConfirmForms() {
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!form.matches || !form.matches("form[data-confirm]") || form.dataset.confirmed) return;
    event.preventDefault();
    const button = $('button[type="submit"]', form);
    if (await confirmDialog(form.dataset.confirm, button ? button.textContent.trim() : "Confirm")) {
      form.dataset.confirmed = "1";
      form.requestSubmit ? form.requestSubmit() : form.submit();
    }
  });
  $$("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
    $$(".js-hide", select.form).forEach((el) => { el.hidden = true; });
  });
}

// ---- tag colours on the meme page's chips (app.js re-renders the list after each edit)
function setupTagColours() {
  const list = $("#tag-list");
  if (!list || !list.dataset.tagColors) return;
  let colours = {};
  try { colours = JSON.parse(list.dataset.tagColors); } catch (e) { return; }
  const paint = () => $$("li.tag", list).forEach((li) => {
    const button = $("[data-tag]", li);
    const colour = button && colours[button.dataset.tag.toLowerCase()];
    if (colour && li.dataset.color !== colour) li.dataset.color = colour;
  });
  new MutationObserver(paint).observe(list, { childList: true });
  paint();
}

// ---- search grid: select mode and bulk removal
function setupSelectMode() {
  const bar = $(".searchbar");
  if (!bar || !$("#results")) return;
  const picked = new Set();
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.id = "select-mode";
  toggle.className = "ghost select-toggle";
  toggle.setAttribute("aria-pressed", "false");
  toggle.innerHTML = `${ICON_SELECT}<span>Select</span>`;
  bar.appendChild(toggle);

  const panel = document.createElement("div");
  panel.id = "select-bar";
  panel.className = "select-bar";
  panel.hidden = true;
  panel.setAttribute("role", "region");
  panel.setAttribute("aria-label", "Selected memes");
  panel.innerHTML = '<span id="select-count">0 selected</span>' +
    '<button type="button" class="ghost small" id="select-all">Select all shown</button>' +
    `<button type="button" class="danger-fill small" id="remove-selected" disabled>${ICON_TRASH}Remove from library</button>` +
    '<button type="button" class="ghost small" id="select-done">Done</button>';
  document.body.appendChild(panel);

  const selecting = () => document.body.dataset.selecting === "1";
  const refresh = () => {
    $$(".hit").forEach((hit) => {
      let box = $(".pick-box", hit);
      if (selecting() && !box) {
        box = document.createElement("span");
        box.className = "pick-box";
        box.innerHTML = ICON_CHECK;
        hit.prepend(box);
      }
      const on = picked.has(hit.dataset.id);
      hit.classList.toggle("picked", on);
      hit.setAttribute("aria-selected", selecting() ? String(on) : "false");
    });
    $("#select-count").textContent = `${picked.size} selected`;
    $("#remove-selected").disabled = picked.size === 0;
  };
  const setMode = (on) => {
    document.body.dataset.selecting = on ? "1" : "";
    toggle.setAttribute("aria-pressed", String(on));
    panel.hidden = !on;
    if (!on) picked.clear();
    refresh();
  };
  toggle.addEventListener("click", () => setMode(!selecting()));
  $("#select-done").addEventListener("click", () => setMode(false));
  $("#select-all").addEventListener("click", () => { $$(".hit").forEach((hit) => picked.add(hit.dataset.id)); refresh(); });
  // In select mode a click on a result picks it instead of opening it (capture: before links and copy buttons).
  document.addEventListener("click", (event) => {
    if (!selecting()) return;
    const hit = event.target.closest(".hit");
    if (!hit) return;
    event.preventDefault();
    event.stopPropagation();
    if (picked.has(hit.dataset.id)) picked.delete(hit.dataset.id); else picked.add(hit.dataset.id);
    refresh();
  }, true);
  document.body.addEventListener("htmx:afterSwap", () => { if (selecting()) refresh(); });

  $("#remove-selected").addEventListener("click", async () => {
    const count = picked.size;
    if (!count) return;
    const question = `Remove ${count} meme${count === 1 ? "" : "s"} from the library? Files in your folders stay on disk ` +
      "(rescans skip them); uploaded files are deleted.";
    if (!(await confirmDialog(question, "Remove from library"))) return;
    try {
      const report = await api("POST", "/api/memes/remove", { ids: Array.from(picked, Number) });
      for (const id of report.removed.concat(report.not_found)) {
        const hit = $(`.hit[data-id="${id}"]`);
        if (hit) hit.remove();
        picked.delete(String(id));
      }
      const n = report.removed.length;
      toast(`Removed ${n} meme${n === 1 ? "" : "s"} from the library` + (report.errors.length ? ` (${report.errors.length} file(s) could not be deleted)` : ""),
        report.errors.length > 0);
      refresh();
    } catch (error) { toast(error.message, true); }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupConfirmForms();
  setupTagColours();
  setupSelectMode();
});
