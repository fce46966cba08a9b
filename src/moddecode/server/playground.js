// moddecode playground: weights per objective, decoding settings, streamed output, side-by-side runs.
// Talks only to this server's own /v1 API (same origin); no external scripts.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { model: null, names: [], running: null, loadedKey: null };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function errorMessage(response) {
  try { return (await response.json()).error.message; } catch { return response.status + " " + response.statusText; }
}

// ----- objectives: a slider and a number per policy, kept in sync -----

async function loadPolicySet() {
  const key = $("api-key").value.trim();
  if (key === state.loadedKey) return;  // already loaded with this key: keep the user's weights
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) throw new Error(await errorMessage(response));
  state.loadedKey = key;
  const card = (await response.json()).data.find((m) => Array.isArray(m.policies));
  state.model = card.id;
  state.names = card.policies.map((p) => p.name);
  $("set-name").textContent = `${card.id}: ${card.policies.length} policies, default divergence ${card.divergence}`;
  const [kind, alpha] = card.divergence.split(":");
  $("divergence").value = kind;
  if (alpha) $("alpha").value = alpha;
  if (card.defaults.max_new_tokens) $("max-tokens").value = card.defaults.max_new_tokens;
  const box = $("objectives");
  box.replaceChildren();
  card.policies.forEach((p, i) => {
    const row = document.createElement("div");
    row.className = "objective";
    row.innerHTML = `<label for="w-range-${i}"></label>
      <input id="w-range-${i}" type="range" min="0" max="1" step="0.01">
      <input id="w-num-${i}" type="number" step="0.01" aria-label="weight of ${p.name}">`;
    row.querySelector("label").innerHTML = `${escapeHtml(p.name)} <small>${escapeHtml(p.objective)}</small>`;
    box.append(row);
    const range = row.querySelector("input[type=range]"), num = row.querySelector("input[type=number]");
    range.addEventListener("input", () => { num.value = range.value; showSum(); });
    num.addEventListener("input", () => { range.value = num.value; showSum(); });
  });
  setWeights(card.default_weights);
  syncDecodingFields();
}

function escapeHtml(text) {
  const div = document.createElement("div");
  div.textContent = text;
  return div.innerHTML;
}

function weights() {
  return state.names.map((_, i) => Number($(`w-num-${i}`).value));
}

function setWeights(values) {
  values.forEach((v, i) => {
    const rounded = Math.round(v * 1e4) / 1e4;
    $(`w-num-${i}`).value = rounded;
    $(`w-range-${i}`).value = rounded;
  });
  showSum();
}

function showSum() {
  const sum = weights().reduce((a, b) => a + b, 0);
  $("weight-sum").textContent = `sum = ${Math.round(sum * 1e4) / 1e4}`;
}

// ----- request body and streaming -----

function divergence() {
  const kind = $("divergence").value;
  return kind === "alpha" ? `alpha:${$("alpha").value}` : kind;
}

function syncDecodingFields() {
  const strategy = $("strategy").value;
  document.querySelectorAll(".sampling").forEach((el) => { el.hidden = strategy !== "sample"; });
  document.querySelectorAll(".beam").forEach((el) => { el.hidden = strategy !== "beam"; });
  $("alpha-label").hidden = $("divergence").value !== "alpha";
}

function requestBody(prompt, w) {
  const body = {
    model: state.model, messages: [{ role: "user", content: prompt }], stream: true,
    weights: w, divergence: divergence(), strategy: $("strategy").value, scope: $("scope").value,
    max_tokens: Number($("max-tokens").value),
  };
  const optional = { temperature: "temperature", top_p: "top-p", top_k: "top-k", seed: "seed" };
  if (body.strategy === "sample") {
    for (const [field, id] of Object.entries(optional)) if ($(id).value !== "") body[field] = Number($(id).value);
  }
  if (body.strategy === "beam") body.num_beams = Number($("num-beams").value);
  return body;
}

// POST a streaming chat completion; calls onText(piece) per delta; resolves to the finish reason.
async function streamChat(body, onText, signal) {
  const response = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
  if (!response.ok) throw new Error(await errorMessage(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", finish = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return finish;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {  // one server-sent event per blank-line-terminated block
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return finish;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        for (const choice of chunk.choices) {
          if (choice.delta && choice.delta.content) onText(choice.delta.content);
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
  }
}

function setStatus(text, stateName, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.dataset.state = stateName;
  status.classList.toggle("error", isError);
}

async function generate() {
  const controller = new AbortController();
  state.running = controller;
  $("generate").disabled = true;
  $("stop").disabled = false;
  const output = $("output");
  output.textContent = "";
  output.classList.remove("error");
  const w = weights();
  setStatus(`decoding with weights [${w.join(", ")}]…`, "running");
  const started = performance.now();
  try {
    const finish = await streamChat(requestBody($("prompt").value, w), (piece) => { output.textContent += piece; }, controller.signal);
    setStatus(`done: ${finish} · ${((performance.now() - started) / 1000).toFixed(2)} s · weights [${w.join(", ")}]`, "done");
  } catch (err) {
    const aborted = err.name === "AbortError";
    setStatus(aborted ? "stopped" : err.message, aborted ? "stopped" : "error", !aborted);
  } finally {
    state.running = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

// ----- side by side -----

function addWeighting(values) {
  const row = document.createElement("div");
  row.className = "weighting";
  row.innerHTML = `<input type="text" aria-label="weights"><button type="button" aria-label="remove">×</button>`;
  row.querySelector("input").value = values.map((v) => Math.round(v * 1e4) / 1e4).join(", ");
  row.querySelector("button").addEventListener("click", () => row.remove());
  $("weightings").append(row);
}

function addPresets() {
  const m = state.names.length;
  state.names.forEach((_, i) => addWeighting(state.names.map((__, j) => (i === j ? 1 : 0))));
  addWeighting(state.names.map(() => 1 / m));
}

async function compare() {
  if (!document.querySelector("#weightings input")) addPresets();
  const vectors = [...document.querySelectorAll("#weightings input")].map((input) => input.value.split(",").map(Number));
  const columns = $("columns");
  columns.replaceChildren();
  const prompt = $("prompt").value;
  $("compare-run").disabled = true;
  // All requests go out at once, so the server batches them into the same forward passes.
  await Promise.all(vectors.map(async (w) => {
    const column = document.createElement("div");
    column.className = "column";
    column.innerHTML = `<h3></h3><pre class="output"></pre>`;
    column.querySelector("h3").textContent = `[${w.join(", ")}]`;
    columns.append(column);
    const out = column.querySelector("pre");
    try {
      const finish = await streamChat(requestBody(prompt, w), (piece) => { out.textContent += piece; });
      column.dataset.finish = finish;
    } catch (err) {
      out.textContent = err.message;
      out.classList.add("error");
      column.dataset.finish = "error";
    }
  }));
  $("compare-run").disabled = false;
}

// ----- wiring -----

$("uniform").addEventListener("click", () => setWeights(state.names.map(() => 1 / state.names.length)));
$("normalize").addEventListener("click", () => {
  const w = weights(), sum = w.reduce((a, b) => a + b, 0);
  if (sum !== 0) setWeights(w.map((v) => v / sum));
});
$("strategy").addEventListener("change", syncDecodingFields);
$("divergence").addEventListener("change", syncDecodingFields);
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => state.running && state.running.abort());
$("add-current").addEventListener("click", () => addWeighting(weights()));
$("add-presets").addEventListener("click", addPresets);
$("clear-weightings").addEventListener("click", () => $("weightings").replaceChildren());
$("compare-run").addEventListener("click", compare);
$("api-key").addEventListener("change", () => {
  loadPolicySet().then(() => setStatus("", "idle")).catch((err) => setStatus(err.message, "error", true));
});

loadPolicySet().catch((err) => setStatus(`could not load the policy set: ${err.message}`, "error", true));
