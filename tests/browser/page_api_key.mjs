// The listener page on a server with API keys: the first call gets 401, the page asks for the key
// (a prompt, answered here), keeps it in sessionStorage and connects; a reload asks no more.
// Usage: node tests/browser/page_api_key.mjs <base-url> <key>   (prints one JSON line)
import { runInChromium } from "./chromium.mjs";

const [baseUrl, key] = process.argv.slice(2);

await runInChromium(async (page, result) => {
  result.prompts = [];
  page.on("dialog", (dialog) => { result.prompts.push(dialog.message()); dialog.accept(key); });
  const connected = async () => {
    await page.waitForSelector("#speak:not([disabled])", { timeout: 60_000 });
    await page.waitForFunction(() => window.orpheus.pc.connectionState === "connected", null, { timeout: 30_000 });
  };
  await page.goto(baseUrl, { waitUntil: "load" });
  await connected();
  result.voices = await page.$$eval("#voice option", (options) => options.map((o) => o.value));
  result.stored = await page.evaluate(() => sessionStorage.getItem("orpheus-api-key") !== null);
  await page.reload({ waitUntil: "load" });
  await connected();
  result.promptsAfterReload = result.prompts.length;
});
