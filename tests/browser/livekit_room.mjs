// Drives web/livekit.html in headless Chromium (Debian package) with playwright-core: join the
// room with the token in the address, wait for the agent's audio, read the receiver's getStats(),
// send a chat message and read them again.
// Usage: node tests/browser/livekit_room.mjs <page-url> <message>   (prints one JSON line)
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", "web", "package.json"));
const { chromium } = require("playwright-core");

const [pageUrl, message = "Say this from the browser."] = process.argv.slice(2);
const CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--autoplay-policy=no-user-gesture-required"];

// inbound-rtp of the agent's audio track, as the browser's WebRTC stack counts it
async function inboundAudio(page) {
  return page.evaluate(async () => {
    const track = window.orpheusLk.agentTrack;
    const report = track && (await track.getRTCStatsReport());
    if (!report) return null;
    let inbound = null;
    const codecs = {};
    report.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        inbound = { packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived,
          totalAudioEnergy: s.totalAudioEnergy ?? 0, totalSamplesReceived: s.totalSamplesReceived ?? 0,
          codec: codecs[s.codecId] ?? null };
      }
    });
    return inbound;
  });
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_FLAGS, headless: true });
const result = { ok: false };
try {
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.waitForFunction(() => window.orpheusLk.agentTrack !== null, null, { timeout: 180_000 });
  result.connection = await page.textContent("#connection");
  // the greeting: wait until the agent has spoken it (speaking -> listening), plus a second for
  // the jitter buffer to play it out, then read the receiver's stats
  const utterances = (n) => page.waitForFunction((k) => window.orpheusLk.utterances >= k, n, { timeout: 240_000 });
  await utterances(1);
  await page.waitForTimeout(1000);
  result.greeting = await inboundAudio(page);
  await page.fill("#message", message);
  await page.click("#send");
  await utterances(2);
  await page.waitForTimeout(1000);
  result.afterMessage = await inboundAudio(page);
  result.agentEvents = await page.evaluate(() => window.orpheusLk.events.filter((e) => e.type === "agent"));
  result.sent = await page.evaluate(() => window.orpheusLk.sent);
  result.agentState = await page.textContent("#agent");
  result.consoleErrors = consoleErrors;
  result.ok = true;
} catch (error) {
  result.error = String(error && error.stack || error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
