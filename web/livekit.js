// LiveKit mode: join a room with livekit-client (served from this server, no CDN), play the agent's
// audio, send chat text (topic "lk.chat"), show connection state, agent state and audio level.
// Token: ?token=&url= in the page address, else minted by GET /v1/livekit/token (listener grants:
// subscribe + text only). ?room= picks the room, ?autojoin=1 joins at load.
// `window.orpheusLk` exposes state for tests.
import { ConnectionState, Room, RoomEvent, Track } from "/vendor/livekit-client/livekit-client.esm.mjs";
import { showDemoBanner } from "/banner.js";

showDemoBanner();

const $ = (id) => document.getElementById(id);
const ui = {
  joinForm: $("join-form"), room: $("room"), join: $("join"), leave: $("leave"),
  chatForm: $("chat-form"), message: $("message"), send: $("send"),
  level: $("level"), connection: $("connection"), agent: $("agent"), transcript: $("transcript"),
  error: $("error"), sink: $("audio-sink"),
};
const params = new URLSearchParams(location.search);
const state = (window.orpheusLk = {
  room: null, agentTrack: null, events: [], sent: 0, transcript: "", agentState: "", utterances: 0,
});

function log(type, detail = {}) {
  state.events.push({ type, t: performance.now(), ...detail });
}

function showError(error) {
  ui.error.textContent = error ? String(error.message || error) : "";
  if (error) log("error", { message: String(error.message || error) });
}

// The TTS server's API key: asked for when it answers 401, kept for this tab only.
const KEY_STORE = "orpheus-api-key";

async function apiFetch(path) {
  for (;;) {
    const key = sessionStorage.getItem(KEY_STORE);
    const response = await fetch(path, key ? { headers: { authorization: `Bearer ${key}` } } : {});
    if (response.status !== 401) return response;
    const entered = window.prompt(key ? "That API key was refused. API key:" : "This server needs an API key:");
    if (!entered) return response;
    sessionStorage.setItem(KEY_STORE, entered.trim());
  }
}

async function credentials(roomName) {
  if (params.get("token") && params.get("url")) return { url: params.get("url"), token: params.get("token") };
  const response = await apiFetch(`/v1/livekit/token?room=${encodeURIComponent(roomName)}`);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body?.error?.message || body?.detail || `token: HTTP ${response.status}`);
  return body;
}

// --- audio level of the agent's track (Web Audio, no playback change) -----------------------
let meter = null;
function startMeter(mediaStreamTrack) {
  stopMeter();
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(new MediaStream([mediaStreamTrack])).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length);
    ui.level.style.width = `${Math.min(100, rms * 400).toFixed(1)}%`;
    meter.raf = requestAnimationFrame(tick);
  };
  meter = { context, raf: requestAnimationFrame(tick) };
}
function stopMeter() {
  if (!meter) return;
  cancelAnimationFrame(meter.raf);
  meter.context.close();
  meter = null;
  ui.level.style.width = "0";
}

// --- room -----------------------------------------------------------------------------------
function setConnection(text) {
  ui.connection.textContent = text;
  log("connection", { state: text });
}

function onTrackSubscribed(track, publication, participant) {
  if (track.kind !== Track.Kind.Audio) return;
  const element = track.attach();  // an <audio> element playing the track
  ui.sink.append(element);
  state.agentTrack = track;
  log("track", { participant: participant.identity });
  startMeter(track.mediaStreamTrack);
}

function onTrackUnsubscribed(track) {
  track.detach().forEach((element) => element.remove());
  if (state.agentTrack === track) { state.agentTrack = null; stopMeter(); }
}

function showAgentState(participant) {
  const agentState = participant.attributes?.["lk.agent.state"];
  if (!participant.isAgent && !agentState) return;
  // speaking -> anything else: one utterance has been played out by the agent
  if (state.agentState === "speaking" && agentState && agentState !== "speaking") state.utterances += 1;
  if (agentState && agentState !== state.agentState) {
    state.agentState = agentState;
    log("agent", { state: agentState });
  }
  ui.agent.textContent = agentState || "joined";
}

async function join(event) {
  event?.preventDefault();
  showError(null);
  ui.join.disabled = true;
  try {
    const { url, token } = await credentials(ui.room.value);
    const room = new Room({ adaptiveStream: false, dynacast: false });
    state.room = room;
    room
      .on(RoomEvent.ConnectionStateChanged, (s) => {
        setConnection(s);
        const connected = s === ConnectionState.Connected;
        ui.send.disabled = !connected;
        ui.leave.disabled = s === ConnectionState.Disconnected;
        ui.join.disabled = s !== ConnectionState.Disconnected;
      })
      .on(RoomEvent.TrackSubscribed, onTrackSubscribed)
      .on(RoomEvent.TrackUnsubscribed, onTrackUnsubscribed)
      .on(RoomEvent.ParticipantConnected, showAgentState)
      .on(RoomEvent.ParticipantAttributesChanged, (_, participant) => showAgentState(participant))
      .on(RoomEvent.ParticipantDisconnected, (p) => { if (p.isAgent) ui.agent.textContent = "left"; })
      .on(RoomEvent.Disconnected, () => stopMeter());
    // The agent's words, as it speaks them (livekit-agents publishes them on this topic).
    room.registerTextStreamHandler("lk.transcription", async (reader) => {
      const text = await reader.readAll();
      if (text.trim()) { state.transcript = text; ui.transcript.textContent = text; }
    });
    await room.connect(url, token, { autoSubscribe: true });
    await room.startAudio().catch(() => {});  // needs a user gesture in most browsers: Join is one
    room.remoteParticipants.forEach(showAgentState);
  } catch (error) {
    showError(error);
    ui.join.disabled = false;
  }
}

async function sendMessage(event) {
  event.preventDefault();
  const text = ui.message.value.trim();
  if (!text || !state.room) return;
  try {
    await state.room.localParticipant.sendText(text, { topic: "lk.chat" });
    state.sent += 1;
    log("sent", { text });
  } catch (error) {
    showError(error);
  }
}

async function leave() {
  await state.room?.disconnect();
}

ui.joinForm.addEventListener("submit", join);
ui.chatForm.addEventListener("submit", sendMessage);
ui.leave.addEventListener("click", leave);
if (params.get("room")) ui.room.value = params.get("room");
if (params.get("autojoin") === "1") join();
