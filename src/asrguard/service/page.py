"""The web page served at ``/``: plain HTML, CSS and JavaScript in one string, no build step.

It uploads a file (or a microphone recording, converted to WAV in the browser) to
``/v1/detect`` (with ``?detector=NAME`` when the server offers several detectors and the user
picks one from the list ``/healthz`` gives) and shows the transcript, the verdict with score and threshold, the distinct
dropout transcripts with counts, the ``P^char`` histogram as inline SVG, and plays the audio
back. Errors are shown as sentences, never as raw JSON. Kept in Python, not a data file, so
it ships in every install.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>asrguard: is this audio adversarial?</title>
<style>
  :root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --bg:#f6f7f9; --ok:#1b7f3b; --bad:#b42318; --accent:#2457c5; }
  * { box-sizing: border-box; }
  [hidden] { display: none !important; }
  body { margin:0; font:16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
  main { max-width: 760px; margin: 0 auto; padding: 1.5rem 1rem 3rem; }
  h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
  p.lead { color: var(--muted); margin: 0 0 1.25rem; }
  .card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:1rem 1.25rem; margin-bottom:1rem; }
  #drop { border:2px dashed var(--line); border-radius:10px; padding:1.25rem; text-align:center; }
  #drop.over { border-color: var(--accent); background:#eef3ff; }
  .row { display:flex; flex-wrap:wrap; gap:.5rem; align-items:center; margin-top:.75rem; }
  button { font:inherit; padding:.5rem 1rem; border-radius:8px; border:1px solid var(--accent); background:var(--accent); color:#fff; cursor:pointer; }
  button.secondary { background:#fff; color:var(--accent); }
  button:disabled { opacity:.5; cursor:default; }
  select { font:inherit; padding:.4rem .5rem; border:1px solid var(--line); border-radius:8px; background:#fff; min-width:0; max-width:100%; flex:1; }
  input[type=password] { font:inherit; padding:.45rem .6rem; border:1px solid var(--line); border-radius:8px; min-width:0; flex:1; }
  #error { display:none; border-left:4px solid var(--bad); background:#fdecea; color:#7a1a12; padding:.75rem 1rem; border-radius:6px; margin-bottom:1rem; }
  #verdict { font-size:1.25rem; font-weight:600; }
  .benign { color: var(--ok); } .adversarial { color: var(--bad); }
  table { border-collapse: collapse; width:100%; }
  td, th { text-align:left; padding:.3rem .4rem; border-bottom:1px solid var(--line); vertical-align:top; }
  td.n { text-align:right; width:4rem; font-variant-numeric: tabular-nums; }
  .muted { color: var(--muted); font-size:.9rem; }
  audio { width:100%; margin-top:.5rem; }
  svg { width:100%; height:auto; display:block; }
  #result { display:none; }
  code { word-break: break-all; }
</style>
</head>
<body>
<main>
  <h1>asrguard</h1>
  <p class="lead">Upload a short speech clip (WAV, FLAC or OGG) or record one. The detector transcribes it many times with
    dropout and flags audio whose transcripts are unstable: the mark of adversarial perturbations.</p>

  <div class="card">
    <div id="drop">
      <label for="file">Choose an audio file</label> or drop one here<br>
      <input id="file" type="file" accept="audio/*,.wav,.flac,.ogg">
    </div>
    <div class="row" id="detectorrow" hidden>
      <label for="detector">Detector</label><select id="detector"></select>
    </div>
    <div class="row" id="keyrow" hidden>
      <label for="key">API key</label><input id="key" type="password" autocomplete="off" placeholder="required by this server">
    </div>
    <div class="row">
      <button id="send" disabled>Check</button>
      <button id="record" class="secondary" type="button">Record</button>
      <span id="status" class="muted" role="status"></span>
    </div>
    <audio id="player" controls hidden></audio>
  </div>

  <div id="error" role="alert"></div>

  <div class="card" id="result">
    <div id="verdict"></div>
    <div class="muted" id="scoreline"></div>
    <h3>Transcript</h3>
    <p id="transcript"></p>
    <h3>Transcripts under dropout</h3>
    <table id="distinct"><thead><tr><th>transcript</th><th class="n">count</th></tr></thead><tbody></tbody></table>
    <h3>Uncertainty histogram</h3>
    <p class="muted">How far (in characters) each dropout transcript is from the most central one. Benign speech piles up at 0.</p>
    <div id="chart"></div>
  </div>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let chosen = null;  // {blob, name}

function showError(text) { const e = $("error"); e.textContent = text; e.style.display = text ? "block" : "none"; }
function choose(blob, name) {
  chosen = {blob, name}; $("send").disabled = false; showError("");
  $("player").src = URL.createObjectURL(blob); $("player").hidden = false;
  $("status").textContent = name;
}

$("file").addEventListener("change", (ev) => { const f = ev.target.files[0]; if (f) choose(f, f.name); });
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over");
  const f = ev.dataTransfer.files[0]; if (f) choose(f, f.name); });

fetch("healthz").then((r) => r.json()).then((h) => {
  if (h.auth) $("keyrow").hidden = false;
  const offered = h.detectors || [];
  if (offered.length > 1) {  // one detector: nothing to choose, so no list
    for (const d of offered) {
      const o = document.createElement("option"); o.value = d.name;
      o.textContent = `${d.name} (${d.recognizer.class}, ${d.classifier})`; $("detector").append(o);
    }
    $("detector").value = h.default_detector; $("detectorrow").hidden = false;
  }
}).catch(() => {});

$("send").addEventListener("click", async () => {
  if (!chosen) return;
  const form = new FormData(); form.append("file", chosen.blob, chosen.name);
  const headers = {}; const key = $("key").value.trim(); if (key) headers["Authorization"] = "Bearer " + key;
  $("send").disabled = true; $("status").textContent = "checking…"; showError(""); $("result").style.display = "none";
  try {
    const chosenDetector = $("detectorrow").hidden ? "" : $("detector").value;
    const url = "v1/detect" + (chosenDetector ? "?detector=" + encodeURIComponent(chosenDetector) : "");
    const r = await fetch(url, {method: "POST", body: form, headers});
    let body = null; try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const why = body && body.error ? body.error : `the server answered ${r.status} ${r.statusText}`;
      const wait = r.headers.get("Retry-After");
      showError("Could not check this audio: " + why + (wait ? ` (try again in ${wait} s)` : ""));
      $("status").textContent = "";
    } else { render(body); $("status").textContent = ""; }
  } catch (e) {
    showError("Could not reach the server: " + e.message);
  } finally { $("send").disabled = false; }
});

function render(b) {
  $("result").style.display = "block";
  const v = $("verdict"); v.textContent = b.verdict === "adversarial" ? "Adversarial: do not trust this transcript" : "Benign";
  v.className = b.verdict;
  $("scoreline").textContent = `score ${b.score.toFixed(3)} vs threshold ${b.threshold.toFixed(3)} ` +
    `(${$("detectorrow").hidden ? "" : "detector " + b.detector_name + ", "}${b.classifier}, ${b.realizations} realisations at p = ${b.p}, ` +
    `target false-positive rate ${(100 * b.target_fpr).toFixed(0)} %)`;
  $("transcript").textContent = b.transcript || "(nothing)";
  const tbody = $("distinct").querySelector("tbody"); tbody.replaceChildren();
  for (const d of b.distinct) {
    const tr = document.createElement("tr"); const t = document.createElement("td"); const n = document.createElement("td");
    t.textContent = d.transcript || "(empty)"; n.textContent = d.count; n.className = "n"; tr.append(t, n); tbody.append(tr);
  }
  $("chart").replaceChildren(histogram(b.histogram));
}

function histogram(counts) {
  const ns = "http://www.w3.org/2000/svg", W = 600, H = 200, pad = 28;
  const svg = document.createElementNS(ns, "svg"); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", "histogram of edit distances to the central transcript");
  const max = Math.max(1, ...counts), bw = (W - 2 * pad) / counts.length;
  counts.forEach((c, i) => {
    const h = (H - 2 * pad) * c / max, x = pad + i * bw, y = H - pad - h;
    const rect = document.createElementNS(ns, "rect");
    Object.entries({x: x + 1, y, width: Math.max(1, bw - 2), height: h, fill: i === 0 ? "#1b7f3b" : "#7a8aa8"})
      .forEach(([k, val]) => rect.setAttribute(k, val));
    const title = document.createElementNS(ns, "title"); title.textContent = `distance ${i}: ${c}`; rect.append(title);
    svg.append(rect);
    if (i % 2 === 0 || counts.length < 12) {
      const t = document.createElementNS(ns, "text"); t.setAttribute("x", x + bw / 2); t.setAttribute("y", H - 10);
      t.setAttribute("text-anchor", "middle"); t.setAttribute("font-size", "11"); t.textContent = i; svg.append(t);
    }
  });
  const axis = document.createElementNS(ns, "line");
  Object.entries({x1: pad, x2: W - pad, y1: H - pad, y2: H - pad, stroke: "#5b6475"}).forEach(([k, val]) => axis.setAttribute(k, val));
  svg.append(axis);
  return svg;
}

// --- recording: MediaRecorder, then decoded and re-encoded as 16-bit WAV in the browser ---
let recorder = null;
$("record").addEventListener("click", async () => {
  if (recorder) { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) { showError("This browser cannot record audio."); return; }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    const chunks = []; recorder = new MediaRecorder(stream);
    recorder.ondataavailable = (ev) => chunks.push(ev.data);
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop()); recorder = null; $("record").textContent = "Record";
      try { choose(await toWav(new Blob(chunks)), "recording.wav"); }
      catch (e) { showError("Could not convert the recording: " + e.message); }
    };
    recorder.start(); $("record").textContent = "Stop"; $("status").textContent = "recording…";
  } catch (e) { showError("Could not use the microphone: " + e.message); }
});

async function toWav(blob) {
  const ctx = new AudioContext(); const audio = await ctx.decodeAudioData(await blob.arrayBuffer()); ctx.close();
  const x = audio.getChannelData(0), rate = audio.sampleRate, buf = new ArrayBuffer(44 + 2 * x.length), v = new DataView(buf);
  const str = (o, s) => [...s].forEach((ch, i) => v.setUint8(o + i, ch.charCodeAt(0)));
  str(0, "RIFF"); v.setUint32(4, 36 + 2 * x.length, true); str(8, "WAVEfmt "); v.setUint32(16, 16, true);
  v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true); v.setUint32(28, 2 * rate, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, 2 * x.length, true);
  x.forEach((s, i) => v.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, s)) * 32767, true));
  return new Blob([buf], {type: "audio/wav"});
}
</script>
</body>
</html>
"""

__all__ = ["PAGE"]
