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

export function launchChromium() {
  return chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_FLAGS, headless: true });
}

export function recordPageErrors(page) {
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  return errors;
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
