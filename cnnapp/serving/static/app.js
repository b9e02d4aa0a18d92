// The page of `cnnapp serve`: plain JavaScript, no dependencies, no build step.
// Every string that comes from a model (names, classes, tokens, errors) goes into the page through
// textContent or an attribute, never through innerHTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], maxBody: 0, model: null, lastImage: null, busy: false, thumbnail: null };

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const fmt = (n) => Number(n).toLocaleString("en-US");
const shape = (dims) => "(" + dims.map((d) => (d === null ? "N" : d)).join(", ") + ")";

// Errors show at the top of the result panel, beside the input, in place of any earlier answer.
function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
  if (message) for (const id of ["result", "image-result", "text-result"]) $(id).hidden = true;
}

// A colour scale: the colour map's bar with its largest value on top and its smallest below.
function scaleLegend(colours, low, high, title) {
  return el("div", { class: "scale", title }, [el("span", { class: "scale-max", text: high }),
    el("span", { class: "scale-bar " + colours }), el("span", { class: "scale-min", text: low })]);
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  let doc;
  try { doc = await response.json(); } catch (e) { throw new Error(`${response.status} ${response.statusText}`); }
  if (!response.ok) {
    const error = new Error(doc && doc.error ? doc.error : `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return doc;
}

const modelPath = (name, verb) => `/v1/models/${encodeURIComponent(name)}/versions/${state.model.version}:${verb}`;

// ------------------------------------------------------------------ models and layer tables

async function loadModels() {
  try {
    const doc = await api("/cnnapp/models");
    state.models = doc.models;
    state.maxBody = doc.max_body;
  } catch (e) {
    $("status").textContent = `Could not list the served models: ${e.message}`;
    return;
  }
  const tabs = $("model-tabs");
  tabs.replaceChildren();
  for (const model of state.models) {
    const button = el("button", { type: "button", "aria-pressed": "false" },
      [model.name, el("span", { class: "kind", text: model.available ? model.kind || "?" : "not loaded" })]);
    button.addEventListener("click", () => selectModel(model.name));
    tabs.append(button);
  }
  if (!state.models.length) {
    $("status").textContent = "No models are served. Start the server with --model-base-path pointing at exports.";
    return;
  }
  const first = modelFromHash() || state.models.find((m) => m.available);
  if (first) selectModel(first.name);
  else $("status").textContent = "No model has a version available yet.";
}

function modelFromHash() {
  const wanted = decodeURIComponent(location.hash.replace(/^#model=/, ""));
  return state.models.find((m) => m.name === wanted);
}

function selectModel(name) {
  const model = state.models.find((m) => m.name === name);
  state.model = model;
  state.lastImage = null;
  history.replaceState(null, "", "#model=" + encodeURIComponent(name));
  for (const button of $("model-tabs").children) {
    button.setAttribute("aria-pressed", String(button.firstChild.textContent === name));
  }
  $("status").hidden = true;
  $("model").hidden = false;
  $("model-name").textContent = model.name;
  if (!model.available) {
    $("model-facts").textContent = "not available: " + model.status.map((s) => `version ${s.version} ${s.state} ${s.error}`).join("; ");
    for (const id of ["image-input", "text-input", "result", "image-result", "text-result"]) $(id).hidden = true;
    renderLayers([]);
    return;
  }
  const facts = [`version ${model.version}`, model.kind === "image" ? "image model" : "sentence model"];
  if (model.model) facts.push(model.model);
  if (model.image_size) facts.push(`${model.image_size.join("×")}×${model.channels} input`);
  facts.push(`${model.class_names.length} classes`);
  if (model.metrics && typeof model.metrics.accuracy === "number") {
    facts.push(`${model.metrics.evaluated_on || "held-out"} accuracy ${(model.metrics.accuracy * 100).toFixed(2)}%`);
  }
  $("model-facts").textContent = facts.join(" · ");
  $("image-input").hidden = model.kind !== "image";
  $("text-input").hidden = model.kind !== "text";
  $("no-explain").hidden = model.explain;
  for (const id of ["result", "image-result", "text-result"]) $(id).hidden = true;
  clearResults();
  showError("");
  showGiven(null);
  updateSentenceButton();
  if (model.kind === "image") setUpImageInput(model);
  renderLayers(model.layers);
}

function clearResults() {
  $("predicted").textContent = "";
  for (const id of ["bars", "maps", "filters", "highlighted"]) $(id).replaceChildren();
  $("ngrams").tBodies[0].replaceChildren();
  for (const id of ["input-image", "gradcam-image", "hirescam-image"]) $(id).removeAttribute("src");
  for (const id of ["low-confidence", "unknown-words"]) $(id).hidden = true;
  document.body.dataset.state = "idle";
}

function renderLayers(layers) {
  const body = $("layers").tBodies[0];
  body.replaceChildren();
  let params = 0, macs = 0, acts = 0;
  for (const row of layers) {
    params += row.params; macs += row.macs; acts += row.activations;
    body.append(el("tr", {}, [
      el("td", { text: row.name }), el("td", { text: row.type }), el("td", { text: shape(row.output_shape) }),
      el("td", { class: "num", text: fmt(row.activations) }), el("td", { class: "num", text: fmt(row.params) }),
      el("td", { class: "num", text: fmt(row.macs) }),
    ]));
  }
  $("layer-totals").textContent = layers.length
    ? `${layers.length} layers · ${fmt(params)} params · ${fmt(acts)} activations · ${fmt(macs)} multiply-adds per example`
    : "(this export has no layer table)";
}

// ------------------------------------------------------------------ image input

function setUpImageInput(model) {
  const select = $("cam-class");
  select.replaceChildren(el("option", { value: "-1", text: "the predicted class" }));
  model.class_names.forEach((name, i) => select.append(el("option", { value: String(i), text: name })));
  select.disabled = !model.explain;
  const [h, w] = model.image_size || [0, 0];
  $("draw").hidden = !(model.channels === 1 && Math.max(h, w) <= 64);
  clearCanvas();
  // Behind a Flatten -> Dense head each position has its own weights: Grad-CAM's averaged gradient
  // cancels out there, HiResCAM's gradient x activation does not. Show the faithful one first.
  const flatten = model.layers.length ? model.layers.some((l) => l.type === "Flatten") : model.model === "image_cnn";
  const [first, second] = flatten ? ["hirescam", "gradcam"] : ["gradcam", "hirescam"];
  $("heatmaps").insertBefore($(first), $(second));
  $("cam-why").hidden = !flatten;
}

// The image as given (a thumbnail and its name), beside the input; null hides it.
function showGiven(src, name) {
  if (state.thumbnail) URL.revokeObjectURL(state.thumbnail);
  state.thumbnail = src && src.startsWith("blob:") ? src : null;
  $("given").hidden = !src;
  if (src) $("given-image").src = src;
  else $("given-image").removeAttribute("src");
  $("given-name").textContent = name || "";
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
    reader.onerror = () => reject(new Error("could not read the file"));
    reader.readAsDataURL(file);
  });
}

async function explainFile(file) {
  if (!file) return;
  document.body.dataset.state = "busy";
  showGiven(URL.createObjectURL(file), `${file.name} · ${fmt(file.size)} bytes`);
  if (file.size * 4 / 3 + 200 > state.maxBody) {
    document.body.dataset.state = "error";
    showError(`${file.name} is ${fmt(file.size)} bytes: over the server's --max-body of ${fmt(state.maxBody)} bytes once encoded.`);
    return;
  }
  try {
    await explainImage(await readFile(file));
  } catch (e) {
    document.body.dataset.state = "error";
    showError(e.message);
  }
}

async function explainImage(b64) {
  state.lastImage = b64;
  const model = state.model;
  const classIndex = Number($("cam-class").value);
  await busy(async () => {
    if (!model.explain) {
      const doc = await api(modelPath(model.name, "predict"), { instances: [{ b64 }] });
      const p = doc.predictions[0];
      renderBars(p.classes.map((c, i) => ({ class: c, probability: p.scores[i] }))
        .sort((a, b) => b.probability - a.probability).slice(0, 5));
      return;
    }
    const doc = await api(modelPath(model.name, "explain"), { instances: [{ b64 }], class_index: classIndex, max_maps: 16 });
    renderImageExplanation(doc.explanations[0]);
  });
}

// document.body.dataset.state: "idle" after a model is chosen, "busy" while a request runs, then
// "done" or "error", so a reader (or a test) can wait for the answer to the request it made.
async function busy(work) {
  showError("");
  state.busy = true;
  document.body.dataset.state = "busy";
  document.body.style.cursor = "progress";
  for (const b of document.querySelectorAll(".input-panel button")) b.disabled = true;
  try {
    await work();
    document.body.dataset.state = "done";
  } catch (e) {
    document.body.dataset.state = "error";
    // The version this page shows was unloaded (a newer one is served): reread the models.
    if (e.status === 404 && state.model) {
      const name = state.model.name;
      await loadModels();
      if (state.models.some((m) => m.name === name && m.available)) selectModel(name);
    }
    showError(e.message);
  } finally {
    document.body.style.cursor = "";
    state.busy = false;
    for (const b of document.querySelectorAll(".input-panel button")) b.disabled = false;
    updateSentenceButton();
  }
}

function renderBars(top) {
  $("result").hidden = false;
  $("predicted").textContent = top[0].class;
  const bars = $("bars");
  bars.replaceChildren();
  for (const item of top) {
    const pct = Math.max(0, Math.min(100, item.probability * 100));
    bars.append(el("span", { class: "bar-label", text: item.class, title: item.class }),
      el("div", { class: "bar" }, [el("div", { style: { width: pct.toFixed(1) + "%" } })]),
      el("span", { class: "bar-value", text: pct.toFixed(1) + "%" }));
  }
  const best = top[0].probability;
  $("low-confidence").hidden = !(best < 0.5);
  $("low-confidence").textContent = `Low confidence: the top class, ${top[0].class}, has only ` +
    `${(best * 100).toFixed(1)}% (below 50%): the model is unsure about this input.`;
  $("unknown-words").hidden = true;
}

const png = (b64) => "data:image/png;base64," + b64;

function renderImageExplanation(x) {
  renderBars(x.top);
  $("image-result").hidden = false;
  $("input-image").src = png(x.input.png);
  for (const key of ["gradcam", "hirescam"]) {
    const cam = x[key];
    $(key + "-image").src = png(cam.overlay.png);
    $(key).querySelector(".cam-class").textContent = cam.empty ? `(${cam.class}: nothing positive)` : `for ${cam.class}`;
  }
  const maps = $("maps");
  maps.replaceChildren();
  for (const layer of x.layers) {
    // Each layer's PNGs are scaled by its largest activation: the first map's peak (most active first).
    const peak = layer.maps.length ? layer.maps[0].max : 0;
    const tiles = el("div", { class: "tiles" }, [scaleLegend("viridis", "0", Number(peak).toPrecision(3),
      `${layer.name}: colours from 0 to the layer's largest activation, ${peak}`)]);
    for (const m of layer.maps) {
      tiles.append(el("div", { class: "tile", title: `map ${m.index}, max ${m.max}` },
        [el("img", { src: png(m.png), alt: `map ${m.index}` }), `#${m.index}`]));
    }
    const [h, w, c] = layer.shape;
    maps.append(el("div", { class: "layer-maps" }, [
      el("h4", {}, [layer.name + " ", el("small", {
        text: `${h}×${w}, ${c} maps, ${Math.round(layer.active_fraction * 100)}% of units active; the ${layer.maps.length} most active`,
      })]), tiles]));
  }
  const filters = $("filters");
  filters.replaceChildren();
  for (const f of x.filters.tiles) {
    filters.append(el("div", { class: "tile" }, [el("img", { src: png(f.png), alt: `filter ${f.index}` }), `#${f.index}`]));
  }
  const s = x.filters.shape;
  $("filters-facts").textContent = `${x.filters.layer}: ${s[3]} filters of ${s[0]}×${s[1]}×${s[2]}`;
}

// drawing on a canvas for small grayscale models
let drawing = false;
function clearCanvas() {
  const ctx = $("canvas").getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, 280, 280);
}

function setUpCanvas() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const point = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * 280 / r.width, (e.clientY - r.top) * 280 / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    const size = Math.max(...(state.model.image_size || [28]));
    ctx.lineWidth = Math.min(60, Math.max(16, 280 / size * 1.6));
    ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.strokeStyle = "#fff";
    ctx.beginPath(); ctx.moveTo(...point(e)); ctx.lineTo(...point(e)); ctx.stroke();
  });
  canvas.addEventListener("pointermove", (e) => { if (drawing) { ctx.lineTo(...point(e)); ctx.stroke(); } });
  const stop = () => { if (drawing) { drawing = false; explainCanvas(); } };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("clear").addEventListener("click", clearCanvas);
  $("explain-drawing").addEventListener("click", explainCanvas);
}

function explainCanvas() {
  const url = $("canvas").toDataURL("image/png");
  showGiven(url, "your drawing");
  explainImage(url.replace(/^data:[^,]*,/, ""));
}

// ------------------------------------------------------------------ sentences

// An empty sentence has nothing to explain (the server refuses it too): the button waits for words.
function updateSentenceButton() {
  const empty = !$("sentence").value.trim();
  $("explain-text").disabled = empty || state.busy;
  $("empty-sentence").hidden = !empty;
}

async function explainSentence(event) {
  event.preventDefault();
  const sentence = $("sentence").value;
  const model = state.model;
  if (!sentence.trim()) {
    updateSentenceButton();
    return;
  }
  await busy(async () => {
    if (!model.explain) {
      const doc = await api(modelPath(model.name, "predict"), { instances: [sentence] });
      const p = doc.predictions[0];
      renderBars(p.classes.map((c, i) => ({ class: c, probability: p.scores[i] }))
        .sort((a, b) => b.probability - a.probability));
      return;
    }
    const doc = await api(modelPath(model.name, "explain"), { instances: [sentence], top: 8 });
    renderTextExplanation(doc.explanations[0]);
  });
}

function renderTextExplanation(x) {
  renderBars(x.top);
  const unknown = x.unknown_tokens || 0, count = x.tokens.length;
  $("unknown-words").hidden = !(count && unknown * 2 > count);
  $("unknown-words").textContent = `${unknown} of ${count} words are not in the model's vocabulary ` +
    `(shown as [UNK]): the answer rests on the ${count - unknown} it knows.`;
  $("text-result").hidden = false;
  for (const node of document.querySelectorAll(".pred-again")) node.textContent = x.predicted;
  const scale = Math.max(1e-9, ...x.token_scores.map(Math.abs));
  const line = $("highlighted");
  line.replaceChildren();
  if (!x.tokens.length) line.append(el("span", { class: "hint", text: "(no known words)" }));
  x.tokens.forEach((token, i) => {
    const s = x.token_scores[i];
    const alpha = (0.08 + 0.62 * Math.abs(s) / scale).toFixed(3);
    const colour = s >= 0 ? `rgba(47, 158, 68, ${alpha})` : `rgba(224, 49, 49, ${alpha})`;
    line.append(el("span", {
      class: "token" + (Math.abs(s) > 0.05 * scale ? " hl" : ""), title: `${s >= 0 ? "+" : ""}${s.toFixed(3)}`,
      style: { background: colour }, text: token,
    }), " ");
  });
  const body = $("ngrams").tBodies[0];
  body.replaceChildren();
  for (const g of x.ngrams) {
    body.append(el("tr", {}, [el("td", { text: g.ngram }), el("td", { text: String(g.width) }),
      el("td", { text: String(g.filters) }), el("td", { class: "num", text: "+" + g.contribution.toFixed(3) })]));
  }
}

// ------------------------------------------------------------------ wiring

document.addEventListener("DOMContentLoaded", () => {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => explainFile(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    explainFile(e.dataTransfer.files[0]);
  });
  $("cam-class").addEventListener("change", () => { if (state.lastImage) explainImage(state.lastImage); });
  $("text-input").addEventListener("submit", explainSentence);
  $("sentence").addEventListener("input", updateSentenceButton);
  window.addEventListener("hashchange", () => {
    const model = modelFromHash();
    if (model && model !== state.model) selectModel(model.name);
  });
  setUpCanvas();
  loadModels();
});
