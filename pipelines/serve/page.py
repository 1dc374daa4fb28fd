"""The page `attn serve` shows at /: drop, choose or record audio, or type text; the top labels as
bars, the explain heat map and the model's info.

One self-contained document: inline CSS and JS, no external asset, so it works offline (the
server's Content-Security-Policy forbids anything else). Every string that comes from a user or a
model (file names, labels, tokens, errors, info) reaches the page through `textContent`, never as
HTML. A recording (MediaRecorder gives WebM/Opus, which soundfile cannot read) is decoded by the
browser and sent as a 16-bit WAV file.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>attn serve</title>
<style>
  :root { --ink: #1d2330; --dim: #5b6475; --line: #d9dee7; --accent: #e8710a; --bg: #f6f7f9; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--ink); background: var(--bg); }
  header { padding: 14px 24px; background: var(--ink); color: #fff; display: flex; gap: 16px; align-items: baseline; }
  header h1 { margin: 0; font-size: 20px; } header span { color: #c8cfdb; font-size: 13px; }
  main { display: grid; grid-template-columns: minmax(320px, 2fr) minmax(260px, 1fr); gap: 20px; padding: 20px 24px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; }
  h2 { font-size: 16px; margin: 0 0 10px; }
  #drop { border: 2px dashed #aab3c2; border-radius: 8px; padding: 28px; text-align: center; color: var(--dim); }
  #drop.over { border-color: var(--accent); background: #fff5ec; }
  button { font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid #aab3c2; background: #fff; cursor: pointer; }
  button.on { background: #c62828; color: #fff; border-color: #c62828; }
  textarea { width: 100%; min-height: 90px; font: inherit; padding: 8px; }
  .row { display: flex; gap: 10px; align-items: center; margin-top: 12px; flex-wrap: wrap; }
  #status { color: var(--dim); min-height: 1.4em; } #status.bad { color: #b00020; }
  #label { font-size: 28px; margin: 6px 0 12px; color: var(--accent); min-height: 1.2em; }
  .bar { display: grid; grid-template-columns: 140px 1fr 64px; gap: 8px; align-items: center; margin: 4px 0; }
  .bar .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar .track { background: #edf0f4; height: 16px; border-radius: 3px; }
  .bar .fill { background: var(--accent); height: 100%; border-radius: 3px; }
  .bar .score { text-align: right; font-variant-numeric: tabular-nums; color: var(--dim); }
  #heat .grid { display: grid; gap: 1px; margin-top: 6px; }
  #heat .cell { height: 18px; }
  #heat .tok { display: inline-block; padding: 2px 4px; margin: 2px; border-radius: 3px; }
  #heat .axis { display: flex; justify-content: space-between; color: var(--dim); font-size: 12px; }
  dl { display: grid; grid-template-columns: auto 1fr; gap: 4px 12px; margin: 0; font-size: 14px; }
  dt { color: var(--dim); } dd { margin: 0; overflow-wrap: anywhere; }
  details { margin-top: 12px; color: var(--dim); }
</style>
</head>
<body>
<header><h1>attn</h1><span id="model">loading the model's info...</span></header>
<main>
<div>
  <section id="input">
    <div id="audio-in">
      <div id="drop">Drop an audio file here, or <input type="file" id="file" accept="audio/*,.wav,.flac,.ogg,.mp3"></div>
      <div class="row"><button id="record" type="button">Record</button><span id="rec-note"></span></div>
    </div>
    <form id="text-in" hidden>
      <textarea id="text" placeholder="Type a text to classify"></textarea>
      <div class="row"><button type="submit">Classify</button></div>
    </form>
    <details><summary>Token</summary><input id="token" type="password" autocomplete="off"
      placeholder="for a server started with --token"></details>
  </section>
  <section id="result" style="margin-top: 20px">
    <p id="status" role="status"></p>
    <div id="input-name"></div>
    <h2 id="label"></h2>
    <div id="bars"></div>
    <h2 style="margin-top: 18px">Where the model looked</h2>
    <div id="heat"></div>
  </section>
</div>
<section id="info"><h2>Model</h2><dl id="facts"></dl></section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let modality = null, multiLabel = false;

function el(tag, text, cls) {  // text always goes in as text, never as HTML
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function status(text, bad) { $("status").textContent = text || ""; $("status").className = bad ? "bad" : ""; }
function authHeaders() { const t = $("token").value; return t ? { "Authorization": "Bearer " + t } : {}; }

async function call(path, options) {
  let r;
  const o = options || {};
  try { r = await fetch(path, Object.assign({}, o, { headers: Object.assign({}, o.headers, authHeaders()) })); }
  catch (e) { return { ok: false, body: { error: "the server did not answer (" + e + ")" } }; }
  let body;
  try { body = await r.json(); } catch (e) { body = { error: r.status + " " + r.statusText }; }
  return { ok: r.ok, status: r.status, body: body };
}

async function loadInfo() {
  const r = await call("/info");
  if (!r.ok) { $("model").textContent = ""; status(r.body.error, true); return; }
  status("", false);  // a token that now works: "missing or wrong token" stood after the info loaded
  const i = r.body, rec = i.recipe || {}, m = i.metrics || {};
  modality = i.modality;
  multiLabel = Boolean((rec.data || {}).multi_label);  // its records hold every score; top_k is refused
  $("model").textContent = (i.path || "") + " \\u2014 " + (i.modality || "") + " model";
  const facts = [["file", i.path], ["modality", i.modality], ["family", (rec.model || {}).name],
    ["labels", (i.labels || []).join(", ")], ["parameters", i.parameters],
    ["sample rate", i.modality === "audio" ? ((rec.features || {}).sample_rate + " Hz") : null],
    ["window", i.modality === "audio" ? ((rec.features || {}).frame_seconds + " s") : null],
    ["test accuracy", m.accuracy !== undefined ? Number(m.accuracy).toFixed(4) : null],
    ["trained", i.created], ["attn", i.attn_commit ? i.attn_version + " (" + i.attn_commit + ")" : i.attn_version]];
  const dl = $("facts"); dl.replaceChildren();
  for (const [k, v] of facts) {
    if (v === undefined || v === null || v === "") continue;
    dl.append(el("dt", k), el("dd", v));
  }
  $("text-in").hidden = modality !== "text";
  $("audio-in").hidden = modality === "text";
}

function showRecord(rec) {
  $("input-name").textContent = rec.input !== undefined ? "input: " + rec.input : "";
  if (rec.error) { $("label").textContent = ""; $("bars").replaceChildren(); status(rec.error, true); return false; }
  // a multi-label model's record: its labels above threshold and every label's score, best first
  const multi = rec.labels !== undefined && rec.scores !== undefined;
  const shown = multi ? rec.labels.join(", ") || "(none)" : rec.label;
  const best = multi ? Math.max(0, ...rec.labels.map((l) => Number(rec.scores[l]))) : rec.score;
  $("label").textContent = shown;
  $("label").setAttribute("data-score", best);
  const bars = $("bars"); bars.replaceChildren();
  const rows = multi ? Object.entries(rec.scores).map(([label, score]) => ({ label, score })).sort((a, b) => b.score - a.score)
    : rec.top_k || [{ label: rec.label, score: rec.score }];
  for (const t of rows) {
    const row = el("div", null, "bar"), track = el("div", null, "track"), fill = el("div", null, "fill");
    fill.style.width = Math.max(0, Math.min(100, 100 * Number(t.score))).toFixed(1) + "%";
    track.append(fill);
    row.append(el("span", t.label, "name"), track, el("span", Number(t.score).toFixed(3), "score"));
    bars.append(row);
  }
  status(rec.warning ? "warning: " + rec.warning : "", false);
  return true;
}

function shade(w, top) {
  const a = top > 0 ? Math.max(0, Math.min(1, w / top)) : 0;
  return "rgba(232, 113, 10, " + (0.06 + 0.94 * a).toFixed(3) + ")";
}

function showHeat(rec) {
  const heat = $("heat"); heat.replaceChildren();
  if (!rec || rec.error || !rec.weights) { if (rec && rec.error) heat.append(el("p", rec.error)); return; }
  const w = rec.weights.map(Number), top = Math.max(...w, 0);
  if (rec.tokens) {
    rec.tokens.forEach((t, i) => { const s = el("span", t, "tok"); s.style.background = shade(w[i], top); heat.append(s); });
  } else {
    const rows = rec.grid ? rec.grid.slice().reverse() : [w];  // high bands on top
    const gtop = rec.grid ? Math.max(...rec.grid.flat().map(Number), 0) : top;
    const g = el("div", null, "grid");
    g.style.gridTemplateColumns = "repeat(" + w.length + ", 1fr)";
    for (const row of rows) for (const v of row) { const c = el("div", null, "cell"); c.style.background = shade(Number(v), gtop); g.append(c); }
    const axis = el("div", null, "axis");
    axis.append(el("span", (rec.window || [0])[0] + " s"), el("span", rec.method), el("span", (rec.window || [0, 0])[1] + " s"));
    heat.append(g, axis);
  }
}

async function classify(body, isJson) {
  status("scoring...", false);
  $("heat").replaceChildren();  // the previous input's heat map must not stand beside this one's answer or error
  const opts = isJson ? { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } }
    : { method: "POST", body: body };  // FormData sets its own multipart type
  const r = await call(multiLabel ? "/predict" : "/predict?top_k=5", opts);
  const recs = r.body.records || [];
  if (!recs.length) { status(r.body.error || "no answer", true); return; }
  if (!showRecord(recs[0])) return;
  const e = await call("/explain", opts);
  showHeat((e.body.records || [])[0] || { error: e.body.error });
}

function sendFile(file, name) {
  const fd = new FormData();
  fd.append("file", file, name || file.name || "audio");
  return classify(fd, false);
}

$("file").addEventListener("change", () => { if ($("file").files.length) sendFile($("file").files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) sendFile(e.dataTransfer.files[0]);
});
$("text-in").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("text").value;
  if (t.trim()) classify({ texts: [t] }, true);
});

// Recording: MediaRecorder's WebM -> the browser's decoder -> mono 16-bit WAV.
function wav(samples, rate) {
  const buf = new ArrayBuffer(44 + samples.length * 2), v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE"); str(12, "fmt ");
  v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
  v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, "data");
  v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) v.setInt16(44 + 2 * i, Math.max(-1, Math.min(1, samples[i])) * 32767, true);
  return new Blob([buf], { type: "audio/wav" });
}
let recorder = null;
$("record").addEventListener("click", async () => {
  if (recorder) { recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) { $("rec-note").textContent = "recording is not available in this browser"; return; }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); }
  catch (e) { $("rec-note").textContent = "no microphone (" + e.name + ")"; return; }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null; $("record").textContent = "Record"; $("record").classList.remove("on"); $("rec-note").textContent = "";
    try {
      const ctx = new AudioContext(), audio = await ctx.decodeAudioData(await new Blob(chunks).arrayBuffer());
      const mono = new Float32Array(audio.length);
      for (let c = 0; c < audio.numberOfChannels; c++) audio.getChannelData(c).forEach((x, i) => { mono[i] += x / audio.numberOfChannels; });
      await sendFile(wav(mono, audio.sampleRate), "recording.wav");
    } catch (e) { status("could not decode the recording (" + e + ")", true); }
  };
  recorder.start();
  $("record").textContent = "Stop"; $("record").classList.add("on"); $("rec-note").textContent = "recording...";
});
$("token").addEventListener("change", loadInfo);
loadInfo();
</script>
</body>
</html>
"""
