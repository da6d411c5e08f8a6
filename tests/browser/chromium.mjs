// Shared by the browser tests: Debian's Chromium through playwright-core (from web/node_modules,
// whatever the cwd), page error capture, and the inbound audio figures of a getStats() report.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", "web", "package.json"));
const { chromium } = require("playwright-core");

// Flags that work on a loopback-only, sandbox-less machine (shared/REFERENCE.md section 5).
const CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--autoplay-policy=no-user-gesture-required"];

function recordPageErrors(page) {
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  return errors;
}

// Runs `scenario(page, result)` in a fresh headless Chromium and prints `result` as one JSON line,
// with `ok`, the page's console errors, and the error that stopped the scenario, if any.
export async function runInChromium(scenario) {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_FLAGS, headless: true });
  const result = { ok: false };
  try {
    const page = await browser.newPage();
    result.consoleErrors = recordPageErrors(page);
    await scenario(page, result);
    result.ok = true;
  } catch (error) {
    result.error = String(error && error.stack || error);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
}

// entries: the values of an RTCStatsReport, copied out of the page ([...report.values()])
export function inboundAudio(entries) {
  if (!entries) return null;
  const codecs = Object.fromEntries(entries.filter((s) => s.type === "codec").map((s) => [s.id, s.mimeType]));
  const s = entries.find((e) => e.type === "inbound-rtp" && e.kind === "audio");
  return s ? { packetsReceived: s.packetsReceived, bytesReceived: s.bytesReceived,
    totalAudioEnergy: s.totalAudioEnergy ?? 0, totalSamplesReceived: s.totalSamplesReceived ?? 0,
    codec: codecs[s.codecId] ?? null } : null;
}
