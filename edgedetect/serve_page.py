"""The demo page of ``edgedetect serve``: HTML, script and style, served from the package (no CDN, works offline)."""

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgedetect: is this image AI-generated?</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<main>
<h1>edgedetect <span class="sub">is this image AI-generated?</span></h1>
<p id="model-line" class="model">Loading the model…</p>

<label id="drop" class="drop" for="file">
  <strong>Drop an image here</strong> or choose a file
  <input id="file" type="file" accept="image/*">
  <span id="limit" class="hint"></span>
</label>

<p id="status" class="status" aria-live="polite"></p>
<div id="error" class="error" role="alert" hidden></div>

<section id="result" hidden>
  <p class="decision"><span id="label" class="label"></span> <span id="pfake"></span></p>
  <p id="file-line" class="detail"></p>
  <p id="decided-by" class="detail"></p>
  <p id="note" class="note" hidden></p>
  <img id="picture" alt="the image and the map of where the model's evidence is">
  <p id="method" class="detail"></p>
</section>

<footer>Runs on this computer only: the image is analysed in memory by a TFLite model and never stored.
The map shows where the evidence is: red pushes towards FAKE, blue towards REAL.</footer>
</main>
<script src="/app.js"></script>
</body>
</html>
"""

APP_JS = r"""
"use strict";
const $ = (id) => document.getElementById(id);
let maxBytes = Infinity;

function show(el, text) { el.textContent = text; el.hidden = !text; }

function showError(message) {
  $("result").hidden = true;
  show($("status"), "");
  show($("error"), message);
}

async function loadModel() {
  try {
    const r = await fetch("/api/model");
    const m = await r.json();
    maxBytes = m.max_bytes;
    $("model-line").textContent = `Model: ${m.description} · ${m.domain.text} · threshold ${m.threshold.toFixed(3)}`;
    $("limit").textContent = `(up to ${(m.max_bytes / 1e6).toFixed(0)} MB)`;
  } catch (e) {
    $("model-line").textContent = "The server does not answer; is `edgedetect serve` still running?";
  }
}

async function analyse(file) {
  show($("error"), "");
  $("result").hidden = true;
  if (file.size > maxBytes) {
    showError(`${file.name} is too large: ${(file.size / 1e6).toFixed(1)} MB; this demo takes files up to ${(maxBytes / 1e6).toFixed(0)} MB.`);
    return;
  }
  show($("status"), `Analysing ${file.name}…`);
  let r, doc;
  try {
    r = await fetch("/api/explain", {method: "POST", body: file,
      headers: {"X-File-Name": encodeURIComponent(file.name), "Content-Type": "application/octet-stream"}});
    doc = await r.json();
  } catch (e) {
    showError(`Could not reach the server (${e.message}); is \`edgedetect serve\` still running?`);
    return;
  }
  if (!r.ok) { showError(doc.error || `The server answered ${r.status}.`); return; }
  show($("status"), "");
  const label = $("label");
  label.textContent = doc.label;
  label.className = "label " + doc.label.toLowerCase();
  const sign = doc.p_fake >= doc.threshold ? "≥" : "<";
  $("pfake").textContent = `p_fake ${doc.p_fake.toFixed(3)} ${sign} threshold ${doc.threshold.toFixed(3)}`;
  $("file-line").textContent = `${doc.name} · ${doc.image_size[0]}×${doc.image_size[1]} px`;
  $("decided-by").textContent = `Decided by ${doc.model.description}; input domain: ${doc.model.domain.text}.`;
  show($("note"), doc.note || "");
  $("picture").src = doc.picture;
  $("method").textContent = `Map: ${doc.model.method}; ${doc.ms.toFixed(0)} ms.`;
  $("result").hidden = false;
}

$("file").addEventListener("change", (e) => { if (e.target.files.length) analyse(e.target.files[0]); });
const drop = $("drop");
["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
drop.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) analyse(e.dataTransfer.files[0]); });
loadModel();
"""

STYLE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       background: #fafafa; color: #222; }
main { max-width: 760px; margin: 0 auto; padding: 20px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h1 .sub { font-weight: normal; color: #666; font-size: 1.1rem; }
.model { color: #555; font-size: 0.9rem; margin: 0 0 14px; }
.drop { display: block; border: 2px dashed #999; border-radius: 10px; padding: 22px; text-align: center;
        background: white; cursor: pointer; }
.drop.over { border-color: #1565c0; background: #e3f2fd; }
.drop input { display: block; margin: 10px auto 4px; }
.hint { color: #777; font-size: 0.85rem; }
.status { color: #555; min-height: 1.2em; }
.error { background: #fdecea; border: 1px solid #c62828; color: #8e1c1c; padding: 10px 14px; border-radius: 6px; }
.decision { font-size: 1.5rem; margin: 8px 0 4px; }
.label { font-weight: bold; padding: 2px 10px; border-radius: 6px; color: white; }
.label.fake { background: #c62828; }
.label.real { background: #2e7d32; }
.detail { color: #444; font-size: 0.92rem; margin: 4px 0; }
.note { background: #fff8e1; border: 1px solid #f9a825; padding: 8px 12px; border-radius: 6px; font-size: 0.9rem; }
#picture { max-width: 100%; border: 1px solid #ddd; margin-top: 8px; background: white; }
footer { color: #777; font-size: 0.8rem; margin-top: 24px; }
"""
