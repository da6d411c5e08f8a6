// A banner on every page while the server runs the random-weight demo model (GET /health says
// `demo: true`), so nobody mistakes its noise for the model's speech.
export async function showDemoBanner() {
  try {
    const health = await (await fetch("/health")).json();
    if (!health.demo) return false;
    const banner = document.createElement("p");
    banner.id = "demo-banner";
    banner.className = "banner";
    banner.setAttribute("role", "status");
    banner.textContent = `Demo model (${health.model}): random weights, you will hear noise, not speech. ` +
      "Run the server with the real Orpheus weights on a GPU machine for speech.";
    document.querySelector("main").prepend(banner);
    return true;
  } catch {
    return false;  // the page still works; /health failing shows up elsewhere
  }
}
