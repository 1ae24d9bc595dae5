// fedn-live WebRTC page: camera → server → annotated video + events (aiortc examples/server style).
//
// The camera is drawn into a canvas that paints each frame's number into a strip at the
// bottom left (the layout of ui/frame_marker.py: keep the two in step) and the canvas is
// what is sent. The server keeps that strip in the annotated frame it returns, so every
// returned frame is matched to the moment its camera frame was drawn: glass-to-glass
// latency, per frame. Records come on the "events" data channel, one JSONL record each.
"use strict";

const MARKER = { bits: 16, cells: 20, perWidth: 40, black: 16, white: 235, low: 80, high: 175 };
const $ = (id) => document.getElementById(id);

const ui = {
  state: $("state"), start: $("start"), stop: $("stop"), remote: $("remote"), local: $("local"),
  placeholder: $("placeholder"), fps: $("fps"), latency: $("latency"), p95: $("latency-p95"),
  sentFps: $("sent-fps"), face: $("face"), peers: $("peers"), serverDetail: $("server-detail"),
  engine: $("engine"),
  error: $("error"), table: document.querySelector("#events tbody"), noEvents: $("no-events"),
  log: $("log"), counts: $("counts"),
};

let session = null;  // everything of the running connection
let statsTimer = null;

// ---- the marker strip --------------------------------------------------------------------
function cellSize(width) { return Math.max(2, Math.floor(width / MARKER.perWidth)); }

function markerBits(n) {
  const bits = [];
  for (let i = 0; i < MARKER.bits; i++) bits.push((n >> (MARKER.bits - 1 - i)) & 1);
  for (let k = 0; k < MARKER.bits / 4; k++) {
    // odd parity on even nibbles, even on odd ones (as ui/frame_marker.py)
    bits.push((bits[4 * k] + bits[4 * k + 1] + bits[4 * k + 2] + bits[4 * k + 3] + (k % 2 === 0 ? 1 : 0)) & 1);
  }
  return bits;
}

function stampMarker(ctx, width, height, n) {
  const c = cellSize(width);
  markerBits(n % (1 << MARKER.bits)).forEach((bit, i) => {
    const g = bit ? MARKER.white : MARKER.black;
    ctx.fillStyle = `rgb(${g},${g},${g})`;
    ctx.fillRect(i * c, height - c, c, c);
  });
}

// Reads the number from the strip (RGBA pixels of the strip only, c rows × cells*c columns).
function readMarker(pixels, c) {
  const q = Math.max(1, Math.floor(c / 4));
  const rowLen = c * MARKER.cells;
  const bits = [];
  for (let i = 0; i < MARKER.cells; i++) {
    let sum = 0, count = 0;
    for (let y = q; y < c - q; y++) {
      for (let x = i * c + q; x < (i + 1) * c - q; x++) {
        const p = (y * rowLen + x) * 4;
        sum += (pixels[p] + pixels[p + 1] + pixels[p + 2]) / 3;
        count++;
      }
    }
    const m = sum / count;
    if (m > MARKER.low && m < MARKER.high) return null;
    bits.push(m >= MARKER.high ? 1 : 0);
  }
  let n = 0;
  for (let i = 0; i < MARKER.bits; i++) n = (n << 1) | bits[i];
  const want = markerBits(n);
  return want.every((b, i) => b === bits[i]) ? n : null;
}

// ---- sending: camera → canvas with marker → WebRTC ---------------------------------------
function startSender(s) {
  const video = ui.local;
  const settings = s.camera.getVideoTracks()[0].getSettings();
  const w = settings.width || 640, h = settings.height || 360;
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d", { alpha: false });
  const out = canvas.captureStream(0);  // one frame per camera frame (requestFrame below)
  const track = out.getVideoTracks()[0];
  track.contentHint = "detail";
  let n = 0;
  const onFrame = () => {
    if (session !== s) return;
    ctx.drawImage(video, 0, 0, w, h);
    stampMarker(ctx, w, h, n);
    s.sentAt.set(n, performance.now());
    if (s.sentAt.size > 600) s.sentAt.delete(n - 600);
    s.sentTimes.push(performance.now());
    n = (n + 1) % (1 << MARKER.bits);
    if (track.requestFrame) track.requestFrame();
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return { stream: out, track };
}

// ---- receiving: returned frames → marker → latency ---------------------------------------
function startReceiver(s) {
  const video = ui.remote;
  const strip = document.createElement("canvas");
  const ctx = strip.getContext("2d", { willReadFrequently: true });
  const onFrame = (now) => {
    if (session !== s) return;
    const w = video.videoWidth, h = video.videoHeight;
    if (w && h) {
      const c = cellSize(w);
      strip.width = c * MARKER.cells; strip.height = c;
      ctx.drawImage(video, 0, h - c, c * MARKER.cells, c, 0, 0, c * MARKER.cells, c);
      const n = readMarker(ctx.getImageData(0, 0, strip.width, strip.height).data, c);
      s.returnedTimes.push(now);
      s.returned++;
      if (n !== null && s.sentAt.has(n)) s.latencies.push([now, now - s.sentAt.get(n)]);
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

function refreshMetrics() {
  if (!session) return;
  const now = performance.now();
  const recent = (times) => { while (times.length && times[0] < now - 2000) times.shift(); return times; };
  ui.fps.textContent = (recent(session.returnedTimes).length / 2).toFixed(1);
  ui.sentFps.textContent = (recent(session.sentTimes).length / 2).toFixed(1);
  while (session.latencies.length && session.latencies[0][0] < now - 3000) session.latencies.shift();
  const lat = session.latencies.map((x) => x[1]).sort((a, b) => a - b);
  if (lat.length) {
    ui.latency.textContent = lat[Math.floor(lat.length / 2)].toFixed(0);
    ui.p95.textContent = `p95 ${lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.95))].toFixed(0)} ms`;
  }
}

// ---- records → table and log -------------------------------------------------------------
const fmt = (x, d = 2) => (typeof x === "number" ? x.toFixed(d) : "–");

function setBadge(row, cls, text) {
  row.querySelector("td.state").innerHTML = `<span class="badge ${cls}">${text}</span>` +
    (row.dataset.truncated === "1" ? '<span class="badge truncated">truncated</span>' : "");
}

function fillRow(row, r) {
  const cells = row.children;
  cells[0].textContent = `${fmt(r.onset_s)}–${fmt(r.offset_s)}`;
  cells[1].innerHTML = `<span class="kind ${r.kind}">${r.kind}</span>`;
  cells[2].innerHTML = `<span class="chip ${r.emotion}">${r.emotion}</span>`;
  cells[3].textContent = fmt(r.score);
}

function rowFor(r, create) {
  const key = `${r.track_id}:${r.id}`;
  let row = session.rows.get(key);
  if (!row && create) {
    row = document.createElement("tr");
    row.innerHTML = "<td></td><td></td><td></td><td class='num'></td>" +
      "<td class='num'></td><td class='state'></td>";
    row.title = `face ${r.track_id}, event ${r.id}`;
    ui.table.prepend(row);
    session.rows.set(key, row);
    ui.noEvents.hidden = true;
  }
  return row;
}

function flash(row) { row.classList.remove("fresh"); void row.offsetWidth; row.classList.add("fresh"); }

function addLog(html) {
  const li = document.createElement("li");
  li.innerHTML = html;
  ui.log.prepend(li);
  while (ui.log.children.length > 60) ui.log.lastChild.remove();
}

function onRecord(message) {
  const r = JSON.parse(message.data);
  const s = session;
  if (!s) return;
  s.counts[r.type] = (s.counts[r.type] || 0) + 1;
  ui.counts.textContent = `${s.counts.event || 0} final · ${s.counts.event_start || 0} provisional · ` +
    `${s.counts.event_cancel || 0} withdrawn`;
  if (r.type === "event_start") {
    const row = rowFor(r, true);
    if (row.classList.contains("final")) return;
    row.className = "under-way";
    fillRow(row, r);
    row.children[4].textContent = "";
    setBadge(row, "under-way", "under way");
    flash(row);
  } else if (r.type === "event") {
    const row = rowFor(r, true);
    row.className = "final";
    row.dataset.truncated = r.truncated ? "1" : "0";
    fillRow(row, r);
    row.children[4].textContent = `${fmt(r.latency_ms, 0)} ms`;
    setBadge(row, "final", "final");
    flash(row);
  } else if (r.type === "event_cancel") {
    const row = rowFor(r, false);
    if (row) { row.className = "withdrawn"; setBadge(row, "withdrawn", "withdrawn"); }
    addLog(`frame ${r.frame}: provisional event <b>${r.track_id}·${r.id}</b> withdrawn`);
  } else if (r.type === "status") {
    if (r.status === "face_found") ui.face.textContent = "found";
    if (r.status === "face_lost" || r.status === "no_face") ui.face.textContent = "none";
    if (r.status !== "dropped") {
      const track = r.track_id !== undefined ? ` (track ${r.track_id})` : "";
      addLog(`frame ${r.frame}: <b>${r.status.replace("_", " ")}</b>${track}`);
    } else {
      s.dropped += r.count || 0;
    }
  } else if (r.type === "summary") {
    s.summary = r;
    addLog(`<b>summary</b>: ${r.frames_processed} of ${r.frames_read} frames processed, ` +
      `${r.frames_dropped} dropped, ${fmt(r.fps, 1)} fps, engine ${r.engine}`);
  }
}

// ---- connection --------------------------------------------------------------------------
function setState(name, text) { ui.state.className = `pill ${name}`; ui.state.textContent = text || name; }

function showError(text) { ui.error.textContent = text; ui.error.hidden = !text; }

function waitIceGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);  // offer what was gathered; host candidates come first
  });
}

async function start() {
  showError("");
  ui.start.disabled = true;
  setState("connecting");
  const s = {
    sentAt: new Map(), sentTimes: [], returnedTimes: [], latencies: [], returned: 0,
    rows: new Map(), counts: {}, dropped: 0, summary: null,
  };
  session = s;
  window.fednSession = s;  // for tests and the curious: counters of this page
  ui.table.innerHTML = ""; ui.log.innerHTML = ""; ui.noEvents.hidden = false; ui.counts.textContent = "";
  try {
    s.camera = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } }, audio: false,
    });
    ui.local.srcObject = s.camera;
    await ui.local.play();
    const sender = startSender(s);
    s.pc = new RTCPeerConnection({ iceServers: [] });
    s.channel = s.pc.createDataChannel("events");
    s.channel.onmessage = onRecord;
    const tx = s.pc.addTransceiver(sender.track, { direction: "sendrecv", streams: [sender.stream] });
    const params = tx.sender.getParameters();
    params.degradationPreference = "maintain-resolution";  // keep the marker cells readable
    tx.sender.setParameters(params).catch(() => {});
    s.pc.ontrack = (e) => {
      ui.remote.srcObject = e.streams[0] || new MediaStream([e.track]);
      ui.remote.onresize = () => {  // hide the marker strip: crop the box by one cell
        const w = ui.remote.videoWidth, h = ui.remote.videoHeight;
        // a little more than one cell: the codec blurs the strip's top edge upwards
        if (w && h) ui.remote.parentElement.style.aspectRatio = `${w} / ${h - Math.ceil(1.3 * cellSize(w))}`;
      };
      ui.placeholder.classList.add("hidden");
      startReceiver(s);
    };
    s.pc.onconnectionstatechange = () => {
      const st = s.pc.connectionState;
      if (st === "connected") setState("live");
      if (st === "failed" || st === "disconnected") { setState("error", st); showError(`connection ${st}`); }
    };
    await s.pc.setLocalDescription(await s.pc.createOffer());
    await waitIceGathering(s.pc);
    const resp = await fetch("/offer", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: s.pc.localDescription.sdp, type: s.pc.localDescription.type }),
    });
    const text = await resp.text();
    if (!resp.ok) throw new Error(`server said ${resp.status}: ${text.trim()}`);
    await s.pc.setRemoteDescription(JSON.parse(text));
    ui.stop.disabled = false;
    s.metricsTimer = setInterval(refreshMetrics, 500);
  } catch (err) {
    setState("error");
    showError(err.message || String(err));
    teardown(s);
    ui.start.disabled = false;
  }
}

function teardown(s) {
  if (s.metricsTimer) clearInterval(s.metricsTimer);
  if (s.pc) s.pc.close();
  if (s.camera) s.camera.getTracks().forEach((t) => t.stop());
  if (session === s) session = null;
}

async function stop() {
  const s = session;
  if (!s) return;
  ui.stop.disabled = true;
  if (s.channel && s.channel.readyState === "open") {
    s.channel.send("finish");  // the server flushes what is under way and sends its summary
    for (let i = 0; i < 40 && !s.summary; i++) await new Promise((r) => setTimeout(r, 100));
  }
  refreshMetrics();
  teardown(s);
  setState("idle");
  ui.start.disabled = false;
}

async function pollStats() {
  try {
    const st = await (await fetch("/stats")).json();
    ui.peers.textContent = `${st.peers}/${st.max_peers}`;
    const dropped = st.per_peer.reduce((a, p) => a + p.frames_dropped, 0);
    const processed = st.per_peer.reduce((a, p) => a + p.frames_processed, 0);
    ui.serverDetail.textContent = `${processed} processed\n${dropped} dropped`;
    ui.engine.innerHTML = `engine <b>${st.engine}</b>`;
  } catch (err) {
    ui.peers.textContent = "offline";
  }
}

ui.start.addEventListener("click", start);
ui.stop.addEventListener("click", stop);
window.addEventListener("pagehide", () => { if (session) teardown(session); });
pollStats();
statsTimer = setInterval(pollStats, 2000);
