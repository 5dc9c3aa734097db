// The page at `/`: two tabs, the live microphone (`/#live`, the default) and files
// (`/#files`), and, when the gateway has API keys on, the key they both use.

import { apiKey, served, setApiKey } from "./access.js";
import { setupFiles } from "./files.js";
import { setupLive } from "./live.js";

const PAGES = ["live", "files"];
const $ = (id) => document.getElementById(id);

function showPage(focus) {
  const current = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : PAGES[0];
  for (const page of PAGES) {
    $(page).hidden = page !== current;
    const link = document.querySelector(`nav a[href="#${page}"]`);
    if (page === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `hermes · ${$(`${current}-heading`).textContent}`;
  if (focus) $(`${current}-heading`).focus();
}

/** The API key: asked for when the gateway wants one, kept for this tab (access.js). */
const access = {
  needed: false,
  ui: {
    panel: $("key-panel"),
    form: $("key-form"),
    input: $("api-key"),
    message: $("key-message"),
    held: $("key-held"),
    forget: $("forget-key"),
    served: $("served"),
  },

  ask(message) {
    this.ui.message.textContent = message;
    this.ui.panel.hidden = false;
    this.ui.held.hidden = true;
    this.ui.input.focus();
  },

  /** Ask the gateway, with the tab's key, whether it lets us in; ask for a key if not. */
  async check() {
    try {
      const { model } = await served();
      this.ui.served.textContent = model ? `Model: ${model}` : "";
      this.ui.panel.hidden = true;
      this.ui.held.hidden = !apiKey();
      return true;
    } catch (error) {
      if (error.code !== "invalid_api_key") {
        this.ui.served.textContent = error.headline || `${error.message || error}`;
        return true; // not the key's fault: the tabs will say what goes wrong
      }
      const refused = apiKey();
      setApiKey(""); // a refused key is not kept
      this.needed = true;
      this.ui.served.textContent = "";
      this.ask(refused ? "The API key of this tab was refused: enter another." : "This gateway needs an API key.");
      return false;
    }
  },
};

access.ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  setApiKey(access.ui.input.value.trim());
  if (await access.check()) access.ui.input.value = "";
});

access.ui.forget.addEventListener("click", () => {
  setApiKey("");
  access.check();
});

window.addEventListener("hashchange", () => showPage(true));
showPage(false);
setupLive(access);
setupFiles(access);
access.check();
