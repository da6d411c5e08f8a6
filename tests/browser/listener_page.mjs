// Drives the listener page in headless Chromium (Debian package) with playwright-core:
// load the page, speak a sentence, and read the peer connection's getStats().
// Usage: node tests/browser/listener_page.mjs <base-url> <text>   (prints one JSON line)
import { inboundAudio, runInChromium } from "./chromium.mjs";

const [baseUrl, text = "Hello there."] = process.argv.slice(2);

const pageStats = (page) => page.evaluate(async () => [...(await window.orpheus.pc.getStats()).values()])
  .then(inboundAudio);

await runInChromium(async (page, result) => {
  await page.goto(baseUrl, { waitUntil: "load" });
  await page.waitForSelector("#speak:not([disabled])", { timeout: 60_000 });
  result.voices = await page.$$eval("#voice option", (options) => options.map((o) => o.value));
  result.banner = await page.locator("#demo-banner").textContent({ timeout: 10_000 }).catch(() => null);
  await page.waitForFunction(() => window.orpheus.pc.connectionState === "connected", null, { timeout: 30_000 });
  await page.waitForTimeout(300);  // let some silence arrive first: the baseline energy
  result.before = await pageStats(page);

  await page.fill("#text", text);
  await page.click("#speak");
  await page.waitForFunction(() => window.orpheus.events.some((e) => e.type === "end" || e.type === "error"),
    null, { timeout: 240_000 });
  result.after = await pageStats(page);
  result.events = await page.evaluate(() => window.orpheus.events);
  result.ui = {
    ttfbServer: await page.textContent("#ttfb-server"),
    ttfbHeard: await page.textContent("#ttfb-heard"),
    state: await page.textContent("#state"),
    error: await page.textContent("#error"),
  };
});
