// While the page cannot reach dim-desktop (the app stopped, or is restarting): a banner saying so
// and what to do, the commands that would only fail made unusable, and the page's body marked
// (`data-app="unreachable"`). The event socket keeps retrying; once it is back the page reloads
// its state and all of this goes away.
//
// dim-desktop reuses its port, so a restarted app is found by itself. When the port had to change
// the page cannot know the new one: after LONG_MS unreachable the banner says where to look.

import { h } from "./dom.js";

export const LONG_MS = 30_000;

export const UNREACHABLE_TEXT = "dim-desktop is not running — start it again (run `dim-desktop`, or open it from your applications menu); this page reconnects by itself.";
export const LONG_TEXT = "If dim-desktop is running again, open it from its window or tray, or the address it printed.";

export class AppStatus {
  /**
   * @param {HTMLElement} before  the banner goes in front of this element
   * @param {HTMLElement[]} controls  made inert (and marked disabled) while unreachable
   */
  constructor(before, controls) {
    this.controls = controls;
    this.more = h("p", { class: "app-unreachable-more", testid: "app-unreachable-more", hidden: true }, LONG_TEXT);
    this.banner = h("div", { class: "app-unreachable", testid: "app-unreachable", role: "alert", hidden: true }, h("p", { class: "app-unreachable-text" }, UNREACHABLE_TEXT), this.more);
    before.parentNode.insertBefore(this.banner, before);
    this.timer = null;
    this.down = false;
  }

  /** `since`: Date.now() when the app was lost, or null while it is reachable. */
  render(since) {
    this.since = since;
    const down = since !== null && since !== undefined;
    if (down !== this.down) {
      this.down = down;
      this.banner.hidden = !down;
      if (down) document.body.dataset.app = "unreachable";
      else delete document.body.dataset.app;
      for (const el of this.controls) {
        if (!el) continue;
        el.inert = down;
        // Buttons and fields inside say so too (a screen reader, a test); the views own `disabled`.
        for (const c of el.matches("button, textarea, input, select") ? [el] : el.querySelectorAll("button, textarea, input, select")) {
          if (down) c.setAttribute("aria-disabled", "true");
          else c.removeAttribute("aria-disabled");
        }
      }
    }
    const long = down && Date.now() - since >= LONG_MS;
    this.more.hidden = !long;
    if (down && !long && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.render(this.since);
      }, Math.max(0, LONG_MS - (Date.now() - since)) + 50);
    } else if (!down && this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}
