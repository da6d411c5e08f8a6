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
      const inbound = async () => {
        const report = await window.orpheusLk.agentTrack.getRTCStatsReport();
        return [...report.values()].find((s) => s.type === "inbound-rtp" && s.kind === "audio") ?? {};
      };
      // The jitter buffer's mean delay over the samples it played out between two reports (ms).
      const jitterMs = (a, b) => {
        const emitted = (b.jitterBufferEmittedCount ?? 0) - (a.jitterBufferEmittedCount ?? 0);
        return emitted > 0 ? (1000 * ((b.jitterBufferDelay ?? 0) - (a.jitterBufferDelay ?? 0))) / emitted : null;
      };
      const before = await inbound();
      const sent = Date.now();
      await window.orpheusLk.room.localParticipant.sendText(text, { topic: "lk.chat" });
      const deadline = sent + 60_000;
      while (Date.now() < deadline) {
        const now = await inbound();
        if ((now.totalAudioEnergy ?? 0) > (before.totalAudioEnergy ?? 0) + 1e-4) {
          const heard = Date.now();
          await new Promise((r) => setTimeout(r, 500));
          const later = await inbound();
          const codec = window.orpheusLk.agentTrack.receiver?.getParameters().codecs?.[0];
          return {
            sent, heard,
            jitter_buffer_ms: jitterMs(now, later),  // what the first half second of speech waited
            jitter_buffer_target_ms: 1000 * ((later.jitterBufferTargetDelay ?? 0) - (now.jitterBufferTargetDelay ?? 0))
              / Math.max(1, (later.jitterBufferEmittedCount ?? 0) - (now.jitterBufferEmittedCount ?? 0)),
            packets_received: now.packetsReceived - (before.packetsReceived ?? 0),
            opus_fmtp: codec?.sdpFmtpLine ?? null,
          };
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      return { sent, heard: null };
    }, message));
    await utterances(i + 2);
    await page.waitForTimeout(1500);
  }
});
