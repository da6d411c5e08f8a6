// Listener page for the embedded WebRTC room: one peer connection to this server, audio in,
// text out over a data channel. No CDN, no framework. `window.orpheus` exposes state for tests.
import { showDemoBanner } from "/banner.js";

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("speak-form"), text: $("text"), voice: $("voice"), speak: $("speak"), stop: $("stop"),
  level: $("level"), connection: $("connection"), state: $("state"), error: $("error"),
  ttfbServer: $("ttfb-server"), ttfbHeard: $("ttfb-heard"), audioS: $("audio-s"), player: $("player"),
};
const orpheus = (window.orpheus = { pc: null, channel: null, events: [], ttfbServerMs: null, ttfbHeardMs: null });

// --- API key: asked for when the server answers 401, kept for this tab only ----------------
const KEY_STORE = "orpheus-api-key";

async function apiFetch(path, init = {}) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORE);
    const headers = { ...(init.headers || {}), ...(key ? { authorization: `Bearer ${key}` } : {}) };
    const response = await fetch(path, { ...init, headers });
    if (response.status !== 401) return response;
    const entered = window.prompt(key ? "That API key was refused. API key:" : "This server needs an API key:");
    if (!entered) return response;  // cancelled: the caller shows the 401
    sessionStorage.setItem(KEY_STORE, entered.trim());
  }
}

// --- voices ---------------------------------------------------------------------------------
async function loadVoices() {
  const response = await apiFetch("/v1/voices");
  if (!response.ok) throw new Error(`voices: HTTP ${response.status}${response.status === 401 ? " (API key needed)" : ""}`);
  const { voices, default: preferred } = await response.json();
  ui.voice.replaceChildren(...voices.map((v) => new Option(v, v, v === preferred, v === preferred)));
}

// --- WebRTC ---------------------------------------------------------------------------------
function waitForIceGathering(pc, timeoutMs = 3000) {
  // The server takes the whole offer at once (no trickle): wait for gathering to finish.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => pc.iceGatheringState === "complete" && done();
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, timeoutMs);
  });
}

async function connect() {
  const pc = new RTCPeerConnection({ iceServers: [] });
  orpheus.pc = pc;
  pc.addTransceiver("audio", { direction: "recvonly" });
  const channel = pc.createDataChannel("tts");
  orpheus.channel = channel;
  channel.onopen = () => { setConnection("connected"); ui.speak.disabled = false; };
  channel.onclose = () => { setConnection("closed"); ui.speak.disabled = true; ui.stop.disabled = true; };
  channel.onmessage = (event) => onServerEvent(JSON.parse(event.data));
  pc.ontrack = (event) => { ui.player.srcObject = event.streams[0] || new MediaStream([event.track]); startMeter(ui.player.srcObject); };
  pc.onconnectionstatechange = () => setConnection(pc.connectionState);

  await pc.setLocalDescription(await pc.createOffer());
  await waitForIceGathering(pc);
  const response = await apiFetch("/rtc/offer", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error?.message || `offer: HTTP ${response.status}`);
  orpheus.listenerId = answer.listener_id;
  await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
}

// --- speaking -------------------------------------------------------------------------------
let speakClickedAt = null;

function speak(event) {
  event.preventDefault();
  showError("");
  resumeMeter();
  speakClickedAt = performance.now();
  orpheus.ttfbServerMs = orpheus.ttfbHeardMs = null;
  ui.ttfbServer.textContent = ui.ttfbHeard.textContent = "…";
  orpheus.channel.send(JSON.stringify({ type: "speak", text: ui.text.value, voice: ui.voice.value }));
}

function stop() {
  orpheus.channel.send(JSON.stringify({ type: "stop" }));
}

function onServerEvent(message) {
  orpheus.events.push(message);
  switch (message.type) {
    case "start": setState("generating"); ui.stop.disabled = false; break;
    case "first_audio":
      orpheus.ttfbServerMs = message.ttfb_ms;
      ui.ttfbServer.textContent = `${message.ttfb_ms.toFixed(0)} ms`;
      setState("speaking");
      break;
    case "metrics": ui.audioS.textContent = `${message.audio_s.toFixed(2)} s (RTF ${message.rtf?.toFixed(2) ?? "–"})`; break;
    case "end": setState(message.cancelled ? "stopped" : "idle"); ui.stop.disabled = true; break;
    case "error": showError(`${message.code}: ${message.message}`); break;
  }
}

// --- level meter (and the "heard" TTFB: click to first audible output) ----------------------
let audioContext = null;
let analyser = null;

function startMeter(stream) {
  audioContext = audioContext || new AudioContext();
  analyser = audioContext.createAnalyser();
  analyser.fftSize = 1024;
  audioContext.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length);
    const db = 20 * Math.log10(rms + 1e-9);
    orpheus.levelDb = db;
    ui.level.style.width = `${Math.max(0, Math.min(100, (db + 60) * (100 / 60)))}%`;
    if (speakClickedAt !== null && db > -50) {
      orpheus.ttfbHeardMs = performance.now() - speakClickedAt;
      ui.ttfbHeard.textContent = `${orpheus.ttfbHeardMs.toFixed(0)} ms`;
      speakClickedAt = null;
    }
    requestAnimationFrame(draw);
  };
  draw();
}

function resumeMeter() {
  if (audioContext && audioContext.state === "suspended") audioContext.resume();
}

// --- small UI helpers -----------------------------------------------------------------------
function setConnection(text) { ui.connection.textContent = text; }
function setState(text) { ui.state.textContent = text; }
function showError(text) { ui.error.textContent = text; }

ui.form.addEventListener("submit", speak);
ui.stop.addEventListener("click", stop);

showDemoBanner();
loadVoices()
  .then(connect)
  .catch((error) => { setConnection("failed"); showError(String(error.message || error)); });
