// The gallery page: everything comes from the JSON API under /api/. Text from the library is
// only ever set with textContent (never as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 100;
let info = { allow_edit: false };
let shown = 0;
const selected = new Set();

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function showError(err) {
  $("error").hidden = false;
  $("error").textContent = String(err.message || err);
}

// ------------------------------------------------------------------ gallery

function filterParams() {
  const p = new URLSearchParams();
  const add = (key, value) => { if (value) p.append(key, value); };
  add("text", $("f-text").value.trim());
  add("model", $("f-model").value);
  add("label", $("f-label").value);
  add("tag", $("f-tag").value);
  if ($("f-metric").value && $("f-min").value !== "") add("min_score", `${$("f-metric").value}=${$("f-min").value}`);
  add("sort", $("f-sort").value);
  return p;
}

function card(clip) {
  const poster = "/" + clip.poster, preview = "/" + clip.preview;
  const img = el("img", { src: poster, alt: `clip ${clip.id}`, loading: "lazy", className: "thumb", dataset: { poster, preview } });
  // previews play on hover (an animated webp), the poster frame otherwise
  img.addEventListener("mouseenter", () => { img.src = preview; });
  img.addEventListener("mouseleave", () => { img.src = poster; });
  const pick = el("input", { type: "checkbox", className: "pick", value: clip.id, checked: selected.has(clip.id) });
  pick.addEventListener("change", () => { pick.checked ? selected.add(clip.id) : selected.delete(clip.id); updateSelection(); });
  const label = clip.label_name || (clip.label === null ? "" : String(clip.label));
  const meta = el("div", { className: "meta" },
    el("label", {}, pick, ` #${clip.id}`),
    el("span", { className: "muted", text: [clip.model, label].filter(Boolean).join(" · ") }));
  const node = el("div", { className: "card", dataset: { id: clip.id } }, el("a", { href: `/clip/${clip.id}` }, img), meta);
  if (clip.duplicate_of) node.append(el("div", { className: "dup", text: `near-duplicate of #${clip.duplicate_of}` }));
  if (clip.tags.length) node.append(el("div", {}, ...clip.tags.map((t) => el("span", { className: "chip", text: t }))));
  return node;
}

function updateSelection() {
  const link = $("download-selection");
  link.classList.toggle("disabled", selected.size === 0);
  link.href = selected.size ? `/api/download?ids=${[...selected].join(",")}` : "#";
  $("selected").textContent = selected.size ? `${selected.size} selected` : "";
}

let latest = 0;  // answers to older requests that arrive late are dropped

async function loadGrid(append = false) {
  const p = filterParams();
  p.set("limit", PAGE);
  p.set("offset", append ? shown : 0);
  const ticket = ++latest;
  try {
    const page = await api(`/api/clips?${p}`);
    if (ticket !== latest) return;
    if (!append) { $("grid").replaceChildren(); shown = 0; }
    for (const clip of page.clips) $("grid").append(card(clip));
    shown += page.clips.length;
    $("count").textContent = `${page.total} clips` + (shown < page.total ? ` (showing ${shown})` : "");
    $("count").dataset.total = page.total;
    $("more").hidden = shown >= page.total;
    $("error").hidden = true;
  } catch (err) { showError(err); }
}

async function gallery() {
  $("gallery-view").hidden = false;
  const f = await api("/api/facets");
  for (const m of f.models) $("f-model").append(el("option", { value: m, text: m }));
  for (const l of f.labels) $("f-label").append(el("option", { value: l.value, text: l.name && l.label !== null ? `${l.name} (${l.label})` : l.value }));
  for (const t of f.tags) $("f-tag").append(el("option", { value: t.tag, text: `${t.tag} (${t.count})` }));
  for (const m of f.metrics) {
    $("f-metric").append(el("option", { value: m.metric, text: m.metric }));
    $("f-sort").append(el("option", { value: `-${m.metric}`, text: `${m.metric} (high first)` }));
    $("f-sort").append(el("option", { value: m.metric, text: `${m.metric} (low first)` }));
  }
  let timer;
  $("filters").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => loadGrid(), 200); });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); loadGrid(); });
  $("more").addEventListener("click", () => loadGrid(true));
  updateSelection();
  await loadGrid();
  document.body.dataset.ready = "gallery";
}

// ------------------------------------------------------------------ one clip

function rows(table, entries) {
  table.replaceChildren();
  for (const [key, value] of entries) {
    if (value === null || value === undefined || value === "") continue;
    const cell = typeof value === "object" ? el("pre", { text: JSON.stringify(value, null, 1) }) : String(value);
    table.append(el("tr", { className: `row-${key}` }, el("th", { text: key }), el("td", {}, cell)));
  }
}

function renderTags(clip) {
  const box = $("tags");
  box.replaceChildren();
  for (const t of clip.tags) {
    const chip = el("span", { className: "chip", text: t });
    if (info.allow_edit) {
      const x = el("button", { title: `remove ${t}`, text: "×" });
      x.addEventListener("click", () => editTags(clip, [], [t]));
      chip.append(x);
    }
    box.append(chip);
  }
  if (!clip.tags.length) box.append(el("span", { className: "muted", text: "no tags" }));
}

async function editTags(clip, add, remove) {
  try {
    const result = await api(`/api/clips/${clip.id}/tags`, {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ add, remove }) });
    clip.tags = result.tags;
    renderTags(clip);
  } catch (err) { showError(err); }
}

async function clipPage(id) {
  $("clip-view").hidden = false;
  let clip;
  try { clip = await api(`/api/clips/${id}`); } catch (err) { showError(err); return; }
  const p = clip.provenance || {};
  document.title = `clip ${clip.id} · vidgan library`;
  $("clip-title").textContent = `clip #${clip.id}` + (clip.caption ? ` — ${clip.caption}` : "");
  const src = `/files/${clip.id}/video`;
  const media = clip.browser_video
    ? el("video", { src, controls: true, loop: true, muted: true, autoplay: true, poster: `/files/${clip.id}/poster` })
    : el("img", { src: ["gif", "apng"].includes(clip.format) ? src : `/files/${clip.id}/preview`, alt: `clip ${clip.id}` });
  $("media").replaceChildren(media);
  $("clip-download").href = `${src}?download=true`;
  $("regen").textContent = `vidgan library regenerate LIB ${clip.id}`;
  renderTags(clip);
  $("tag-form").hidden = !info.allow_edit;
  $("tag-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("tag-input").value.trim();
    if (t) editTags(clip, [t], []);
    $("tag-input").value = "";
  });
  $("scores").replaceChildren(el("tr", {}, el("th", { text: "metric" }), el("th", { text: "value" }), el("th", { text: "protocol" })));
  for (const [metric, value] of Object.entries(clip.scores)) {
    $("scores").append(el("tr", {}, el("td", { text: metric }), el("td", { text: String(value) }), el("td", { className: "muted", text: clip.score_protocols[metric] || "" })));
  }
  rows($("provenance"), [["model", p.model], ["run", p.run], ["checkpoint", p.checkpoint], ["step", p.step],
    ["checkpoint_sha256", p.checkpoint_sha256], ["ema", p.ema], ["seed", p.seed], ["n", p.n], ["index", p.index],
    ["batch_size", p.batch_size], ["label", p.label], ["label_name", p.label_name], ["text", p.text],
    ["first_frame", p.first_frame], ["truncation", p.truncation], ["output_sha256", p.output_sha256], ["settings", p.settings]]);
  rows($("file"), [["format", clip.format], ["frames", clip.frames], ["fps", clip.fps], ["size", `${clip.width}x${clip.height}`],
    ["duration", `${clip.duration.toFixed(2)} s`], ["bytes", clip.bytes], ["sha256", clip.sha256], ["frames_sha256", clip.frames_sha256],
    ["source_name", clip.source_name], ["created", clip.created],
    ["duplicate_of", clip.duplicate_of ? `#${clip.duplicate_of} (distance ${clip.duplicate_distance})` : null]]);
  document.body.dataset.ready = "clip";
}

async function main() {
  try {
    info = await api("/api/info");
    $("library-name").textContent = info.name;
    $("mode").textContent = info.allow_edit ? "tags editable" : "read-only";
    const m = location.pathname.match(/^\/clip\/(\d+)$/);
    if (m) await clipPage(m[1]); else await gallery();
  } catch (err) { showError(err); }
}

main();
