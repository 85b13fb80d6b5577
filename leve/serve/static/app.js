// leve serve page: send the image, show the depth map, the colour bar and the downloads.
"use strict";
const byId = (id) => document.getElementById(id);
const maxBytes = Number(document.body.dataset.maxBytes);
let rerun = null; // repeats the last prediction when the flip option changes

function showError(message) {
  byId("error").textContent = message;
  byId("error").hidden = !message;
  if (message) document.body.dataset.state = "error";
}

function setStatus(text) { byId("status").textContent = text; }

async function send(url, body, headers) {
  showError("");
  setStatus("Predicting\u2026");
  document.body.dataset.state = "busy";
  const start = performance.now();
  let response, data;
  try {
    response = await fetch(url, { method: "POST", body, headers });
  } catch (err) {
    setStatus("");
    return showError("cannot reach the server (" + err + ")");
  }
  try { data = await response.json(); } catch (err) { data = { error: "server answered HTTP " + response.status }; }
  if (!response.ok) {
    setStatus("");
    return showError(data.error || "server answered HTTP " + response.status);
  }
  await show(data, performance.now() - start);
}

async function show(r, roundtripMs) {
  byId("input-image").src = r.input;
  byId("depth-image").src = r.depth;
  byId("bar-image").src = r.colorbar;
  await Promise.all(["input-image", "depth-image"].map((id) => byId(id).decode().catch(() => null)));
  byId("ticks").replaceChildren(...r.ticks.map((t) => {
    const el = document.createElement("span");
    el.className = "tick";
    el.style.top = (100 * t.pos) + "%";
    el.textContent = t.label; // metres for a metric model; far and near for a relative one
    return el;
  }));
  byId("size").textContent = r.width + "\u00d7" + r.height;
  byId("inference-ms").textContent = r.inference_ms.toFixed(1);
  byId("device").textContent = r.device;
  byId("flip-note").textContent = r.flip ? " with flip averaging" : "";
  byId("roundtrip-ms").textContent = roundtripMs.toFixed(0);
  byId("range").textContent = r.range_text;
  byId("reference").textContent = r.reference_text || "";
  byId("download-heading").textContent = r.labels.heading;
  for (const kind of ["png16", "npy", "ply"]) {
    if (!r.downloads[kind]) continue;
    const link = byId("download-" + kind);
    link.href = r.downloads[kind];
    [link.textContent, link.download] = r.labels[kind];
  }
  byId("ply-link").hidden = !r.downloads.ply;
  byId("intrinsics").textContent = r.intrinsics ? "Point cloud camera: " + r.intrinsics + "." : "";
  byId("result").hidden = false;
  setStatus("Done: " + r.name + " in " + roundtripMs.toFixed(0) + " ms.");
  document.body.dataset.state = "done";
}

function flipQuery() { return "flip=" + byId("flip").checked; }

function upload(file) {
  if (!file) return;
  if (file.size > maxBytes) {
    return showError(file.name + ": file is larger than the upload limit of " + maxBytes.toLocaleString("en") + " bytes");
  }
  rerun = () => send("api/predict?name=" + encodeURIComponent(file.name) + "&" + flipQuery(), file,
                     { "Content-Type": file.type || "application/octet-stream" });
  rerun();
}

function predictSample(index) {
  rerun = () => send("api/samples/" + index + "/predict?" + flipQuery(), null, {});
  rerun();
}

byId("file").addEventListener("change", (e) => upload(e.target.files[0]));
byId("flip").addEventListener("change", () => rerun && rerun());
for (const button of document.querySelectorAll(".sample")) {
  button.addEventListener("click", () => predictSample(button.dataset.index));
}
const drop = byId("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  upload(e.dataTransfer.files[0]);
});
