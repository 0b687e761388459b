// The chat demo's glue: WebGPU setup, model loading (file picker or
// fetch), streaming chat, and the automatic runs the browser test and the
// screenshot use (query parameters: model=URL fetches a model at once;
// then greedy=N&prompt=TEXT decodes N greedy ids, or chat=TEXT sends a
// message; max=N caps replies; subgroups=0 keeps the kernels off
// subgroups; kernels=1 first has the browser check every matvec
// variant's WGSL; see
// scripts/web.py).
import init, {
  init_gpu, load_model, greedy_ids, chat, cancel, reset_chat, check_matvec_wgsl,
} from "./pkg/q4gpu_web.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let adapterLine = "";
let adapterName = "";

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
  (isError ? console.error : console.log)("[q4gpu] " + text);
}

// Tokens per second with two significant digits below 10.
const rate = (x) => (x < 10 ? x.toPrecision(2) : x.toFixed(1));

function chatEnabled(on) {
  for (const id of ["message", "go", "reset"]) $(id).disabled = !on;
}

function addTurn(cls, text) {
  const div = document.createElement("div");
  div.className = "turn " + cls;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

async function loadBytes(bytes, name) {
  chatEnabled(false);
  status(`${adapterLine}\nUploading ${name} …`);
  const ctx = Number($("ctx").value) || 1024;
  const maxReply = Number(params.get("max")) || Math.min(512, ctx >> 1);
  const line = await load_model(bytes, ctx, maxReply);
  status(`${adapterLine}\nModel ${name}: ${line}`);
  $("log").textContent = "";
  chatEnabled(true);
  return line;
}

async function fetchModel(url) {
  status(`${adapterLine}\nFetching ${url} …`);
  const resp = await fetch(url);
  if (!resp.ok) throw new Error(`fetching ${url}: HTTP ${resp.status}`);
  return loadBytes(new Uint8Array(await resp.arrayBuffer()), url);
}

async function send(message) {
  chatEnabled(false);
  $("stop").disabled = false;
  addTurn("user", message);
  const out = addTurn("assistant", "");
  try {
    const r = JSON.parse(await chat(message, (piece) => { out.textContent += piece; }));
    const s = document.createElement("div");
    s.className = "stats";
    s.textContent = `${r.tokens} tokens, ${rate(r.decode_tok_s)} tok/s decode, ` +
      `${r.prompt_tokens} prompt tokens in ${r.first_token_ms.toFixed(0)} ms to the first token (${r.stop})`;
    out.after(s);
    return r;
  } finally {
    $("stop").disabled = true;
    chatEnabled(true);
  }
}

// Shows an error in the page and the console; the test reads it from there.
function fail(e) {
  const msg = e && e.message ? e.message : String(e);
  status(`${adapterLine}\nerror: ${msg}`, true);
  window.q4gpuResult = { ok: false, error: msg };
}

async function automatic() {
  let kernels;
  if (params.get("kernels") === "1") {
    status(`${adapterLine}\nChecking every matvec variant's WGSL …`);
    kernels = await check_matvec_wgsl();
    status(`${adapterLine}\n${kernels}`);
  }
  if (params.has("model")) await fetchModel(params.get("model"));
  if (params.has("greedy")) {
    const n = Number(params.get("greedy"));
    const r = JSON.parse(await greedy_ids(params.get("prompt") || "", n));
    $("ids").textContent = `greedy ids: ${JSON.stringify(r.ids)}\n` +
      `${rate(r.decode_tok_s)} tok/s decode, first token after ${r.first_token_ms.toFixed(0)} ms`;
    window.q4gpuResult = { ok: true, adapter: adapterLine, kernels, ...r };
  }
  if (params.has("chat")) {
    const r = await send(params.get("chat"));
    window.q4gpuResult = { ok: true, adapter: adapterLine, ...r };
  }
}

// wgpu 30's WebGPU backend neither asks for nor reports the browser's
// "subgroups" feature. Where the adapter has it (and the page was not opened
// with ?subgroups=0), the device request is made to ask for it, and the
// kernels are told they may use subgroups. (It also names the adapter:
// wgpu's AdapterInfo is empty on the web.)
async function requestSubgroups() {
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  const info = adapter && adapter.info;
  adapterName = info ? [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") : "";
  if (params.get("subgroups") === "0") return false;
  if (!adapter || !adapter.features.has("subgroups")) return false;
  const original = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = function (desc = {}) {
    const features = [...(desc.requiredFeatures || [])];
    if (this.features.has("subgroups") && !features.includes("subgroups")) features.push("subgroups");
    return original.call(this, { ...desc, requiredFeatures: features });
  };
  return true;
}

async function main() {
  await init();
  if (!navigator.gpu) throw new Error("this browser has no WebGPU (navigator.gpu is missing)");
  const subgroups = await requestSubgroups();
  // wgpu's line starts with the adapter's name and driver, empty on the web.
  const line = (await init_gpu(subgroups)).replace(/^\s*\(BrowserWebGpu, \),\s*/, "");
  adapterLine = `WebGPU on ${adapterName || "an unnamed adapter"}, ${line}`;
  status(`${adapterLine}\nPick a GGUF file or fetch one.`);
  $("file").addEventListener("change", async () => {
    const f = $("file").files[0];
    if (f) loadBytes(new Uint8Array(await f.arrayBuffer()), f.name).catch(fail);
  });
  $("fetch").addEventListener("click", () => fetchModel($("url").value).catch(fail));
  $("send").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const m = $("message").value.trim();
    if (!m) return;
    $("message").value = "";
    send(m).catch(fail);
  });
  $("stop").addEventListener("click", () => cancel());
  $("reset").addEventListener("click", () => {
    try { reset_chat(); $("log").textContent = ""; } catch (e) { fail(e); }
  });
  await automatic();
}

main().catch(fail);
