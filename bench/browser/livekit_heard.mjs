// bench/latency.py's Chromium listener: joins web/livekit.html with the token in the address, lets
// the greeting play, then sends chat messages one at a time and notes (wall clock, ms) when each is
// sent and when the agent track's totalAudioEnergy first rises after it (the browser played it).
// Usage: node bench/browser/livekit_heard.mjs <page-url> <rounds> <message>   (prints one JSON line)
import { runInChromium } from "../../tests/browser/chromium.mjs";

const [pageUrl, rounds = "3", message = "Say this back to me."] = process.argv.slice(2);

await runInChromium(async (page, result) => {
  await page.goto(pageUrl, { waitUntil: "load" });
  await page.waitForFunction(() => window.orpheusLk.agentTrack !== null, null, { timeout: 180_000 });
  const utterances = (n) => page.waitForFunction((k) => window.orpheusLk.utterances >= k, n, { timeout: 240_000 });
  await utterances(1);  // the greeting
  await page.waitForTimeout(1500);
  result.rounds = [];
  for (let i = 0; i < Number(rounds); i++) {
    result.rounds.push(await page.evaluate(async (text) => {
      const energy = async () => {
        const report = await window.orpheusLk.agentTrack.getRTCStatsReport();
        const inbound = [...report.values()].find((s) => s.type === "inbound-rtp" && s.kind === "audio");
        return inbound ? inbound.totalAudioEnergy ?? 0 : 0;
      };
      const before = await energy();
      const sent = Date.now();
      await window.orpheusLk.room.localParticipant.sendText(text, { topic: "lk.chat" });
      const deadline = sent + 60_000;
      while (Date.now() < deadline) {
        if ((await energy()) > before + 1e-4) return { sent, heard: Date.now() };
        await new Promise((r) => setTimeout(r, 5));
      }
      return { sent, heard: null };
    }, message));
    await utterances(i + 2);
    await page.waitForTimeout(1500);
  }
});
