// Drives web/livekit.html in headless Chromium (Debian package) with playwright-core: join the
// room with the token in the address, wait for the agent's audio, read the receiver's getStats(),
// send a chat message and read them again.
// Usage: node tests/browser/livekit_room.mjs <page-url> <message>   (prints one JSON line)
import { inboundAudio, runInChromium } from "./chromium.mjs";

const [pageUrl, message = "Say this from the browser."] = process.argv.slice(2);

// inbound-rtp of the agent's audio track, as the browser's WebRTC stack counts it
const agentTrackStats = (page) => page.evaluate(async () => {
  const track = window.orpheusLk.agentTrack;
  const report = track && (await track.getRTCStatsReport());
  return report ? [...report.values()] : null;
}).then(inboundAudio);

await runInChromium(async (page, result) => {
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.waitForFunction(() => window.orpheusLk.agentTrack !== null, null, { timeout: 180_000 });
  result.connection = await page.textContent("#connection");
  // the greeting: wait until the agent has spoken it (speaking -> listening), plus a second for
  // the jitter buffer to play it out, then read the receiver's stats
  const utterances = (n) => page.waitForFunction((k) => window.orpheusLk.utterances >= k, n, { timeout: 240_000 });
  await utterances(1);
  await page.waitForTimeout(1000);
  result.greeting = await agentTrackStats(page);
  await page.fill("#message", message);
  await page.click("#send");
  await utterances(2);
  await page.waitForTimeout(1000);
  result.afterMessage = await agentTrackStats(page);
  result.agentEvents = await page.evaluate(() => window.orpheusLk.events.filter((e) => e.type === "agent"));
  result.sent = await page.evaluate(() => window.orpheusLk.sent);
  result.agentState = await page.textContent("#agent");
});
