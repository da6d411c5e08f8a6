// Drives the listener page in headless Chromium (Debian package) with playwright-core:
// load the page, speak a sentence, and read the peer connection's getStats().
// Usage: node tests/browser/listener_page.mjs <base-url> <text>   (prints one JSON line)
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

// Resolve playwright-core from web/node_modules whatever the cwd.
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", "web", "package.json"));
const { chromium } = require("playwright-core");

const [baseUrl, text = "Hello there."] = process.argv.slice(2);
const CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--autoplay-policy=no-user-gesture-required"];

async function inboundAudio(page) {
  return page.evaluate(async () => {
    const stats = await window.orpheus.pc.getStats();
    let inbound = null;
    const codecs = {};
    stats.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
    stats.forEach((s) => {
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
  await page.goto(baseUrl, { waitUntil: "load" });
  await page.waitForSelector("#speak:not([disabled])", { timeout: 60_000 });
  result.voices = await page.$$eval("#voice option", (options) => options.map((o) => o.value));
  await page.waitForFunction(() => window.orpheus.pc.connectionState === "connected", null, { timeout: 30_000 });
  await page.waitForTimeout(300);  // let some silence arrive first: the baseline energy
  result.before = await inboundAudio(page);

  await page.fill("#text", text);
  await page.click("#speak");
  await page.waitForFunction(() => window.orpheus.events.some((e) => e.type === "end" || e.type === "error"),
    null, { timeout: 240_000 });
  result.after = await inboundAudio(page);
  result.events = await page.evaluate(() => window.orpheus.events);
  result.ui = {
    ttfbServer: await page.textContent("#ttfb-server"),
    ttfbHeard: await page.textContent("#ttfb-heard"),
    state: await page.textContent("#state"),
    error: await page.textContent("#error"),
  };
  result.consoleErrors = consoleErrors;
  result.ok = true;
} catch (error) {
  result.error = String(error && error.stack || error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
