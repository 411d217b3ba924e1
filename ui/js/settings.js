// The Settings screen: $DIM_HOME/config/settings.toml, shown and edited through the bridge.
//
// get_settings -> {path, values, defaults, explicit, schema: [{key, type, choices?, optional, help,
// live}], pendingRestart}; set_settings {changes: {key: value | null}} saves (null: back to the
// default) or fails with INVALID_ARGUMENTS naming the key, and then nothing was saved.
// Only the fields the user changed are sent. The form is built from the schema, so a new setting
// needs no change here.

import { h, clear } from "./dom.js";

export class SettingsScreen {
  /** openButton: the button that opens the screen; invoke: the bridge's invoke(). */
  constructor(openButton, { invoke }) {
    this.invoke = invoke;
    this.data = null;
    this.inputs = new Map(); // key -> {field, read: () => value}
    this.dialog = h("dialog", { class: "settings", testid: "settings-panel", "aria-labelledby": "settings-title" });
    this.form = h("form", { class: "settings-form", method: "dialog" });
    this.path = h("div", { class: "muted small settings-path" });
    this.fields = h("div", { class: "settings-fields" });
    this.error = h("div", { class: "settings-error", testid: "settings-error", role: "alert", hidden: true });
    this.status = h("div", { class: "settings-status muted small", testid: "settings-status", role: "status" });
    this.save = h("button", { type: "submit", class: "primary", testid: "settings-save" }, "Save");
    const close = h("button", { type: "button", class: "ghost", testid: "settings-close" }, "Close");
    close.addEventListener("click", () => this.dialog.close());
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.form.append(
      h("h2", { id: "settings-title" }, "Settings"),
      this.path,
      this.fields,
      this.error,
      h("div", { class: "row end settings-actions" }, this.status, close, this.save),
    );
    this.dialog.appendChild(this.form);
    document.body.appendChild(this.dialog);
    openButton.addEventListener("click", () => this.open());
  }

  async open() {
    this.showError(null);
    this.status.textContent = "Loading…";
    if (typeof this.dialog.showModal === "function" && !this.dialog.open) this.dialog.showModal();
    else this.dialog.setAttribute("open", "");
    try {
      this.render(await this.invoke("get_settings", {}));
      this.status.textContent = this.pendingText();
    } catch (err) {
      this.showError(err);
      this.status.textContent = "";
    }
  }

  render(data) {
    this.data = data;
    this.path.textContent = data.path || "";
    clear(this.fields);
    this.inputs.clear();
    for (const spec of data.schema || []) this.fields.appendChild(this.renderField(spec, data.values[spec.key], data.defaults[spec.key]));
  }

  renderField(spec, value, dflt) {
    const key = spec.key;
    const id = `setting-${key}`;
    let field;
    let read;
    if (spec.type === "bool") {
      field = h("input", { type: "checkbox", id, testid: id, checked: !!value });
      read = () => field.checked;
    } else if (spec.type === "choice") {
      field = h("select", { id, testid: id }, (spec.choices || []).map((c) => h("option", { value: c }, c)));
      field.value = value;
      read = () => field.value;
    } else if (spec.type === "list") {
      field = h("textarea", { id, testid: id, rows: 3, spellcheck: "false", placeholder: "one per line" });
      field.value = (value || []).join("\n");
      read = () =>
        field.value
          .split("\n")
          .map((s) => s.trim())
          .filter(Boolean);
    } else if (spec.type === "int" || spec.type === "float") {
      // Text, not type=number: the bridge validates, and a bad value must reach it to be named.
      field = h("input", { type: "text", inputmode: "decimal", id, testid: id, autocomplete: "off", spellcheck: "false" });
      field.value = value === null || value === undefined ? "" : String(value);
      read = () => {
        const t = field.value.trim();
        if (t === "") return null;
        const n = Number(t);
        return Number.isFinite(n) ? n : t; // a non-number goes as text, and the error names the key
      };
    } else {
      field = h("input", { type: "text", id, testid: id, autocomplete: "off", spellcheck: "false", placeholder: spec.optional ? "not set" : "" });
      field.value = value ?? "";
      read = () => {
        const t = field.value.trim();
        return t === "" && spec.optional ? null : t;
      };
    }
    this.inputs.set(key, { field, read });
    const help = [spec.help, dflt !== null && dflt !== undefined && spec.type !== "list" ? `default ${JSON.stringify(dflt)}` : "", spec.live ? "applies at once" : "applies at next start"]
      .filter(Boolean)
      .join(" · ");
    const label = h("label", { for: id, class: "settings-key" }, key);
    return h("div", { class: `settings-field type-${spec.type}`, dataset: { key } }, label, field, h("div", { class: "muted small settings-help" }, help));
  }

  changes() {
    const out = {};
    const values = this.data ? this.data.values : {};
    for (const [key, { read }] of this.inputs) {
      const now = read();
      if (JSON.stringify(now) !== JSON.stringify(values[key] ?? null)) out[key] = now;
    }
    return out;
  }

  async submit() {
    const changes = this.changes();
    this.showError(null);
    if (!Object.keys(changes).length) {
      this.status.textContent = "Nothing changed.";
      return;
    }
    this.save.disabled = true;
    try {
      this.render(await this.invoke("set_settings", { changes }));
      this.status.textContent = `Saved. ${this.pendingText()}`.trim();
    } catch (err) {
      this.showError(err);
      this.status.textContent = "Not saved: the previous settings are kept.";
    } finally {
      this.save.disabled = false;
    }
  }

  pendingText() {
    const pending = (this.data && this.data.pendingRestart) || [];
    return pending.length ? `Restart dim-desktop to apply: ${pending.join(", ")}.` : "";
  }

  showError(err) {
    for (const { field } of this.inputs.values()) field.removeAttribute("aria-invalid");
    if (!err) {
      this.error.hidden = true;
      this.error.textContent = "";
      this.error.removeAttribute("data-key");
      return;
    }
    // The bridge's message starts "set_settings: KEY: ..." (error.key holds the same KEY).
    const m = /^\w+_settings: ([a-z0-9_]+):/.exec(err.message || "");
    const key = err.key || (m && this.inputs.has(m[1]) ? m[1] : null);
    this.error.hidden = false;
    this.error.textContent = err.message || String(err);
    if (key) {
      this.error.dataset.key = key;
      const input = this.inputs.get(key);
      if (input) {
        input.field.setAttribute("aria-invalid", "true");
        input.field.focus();
      }
    }
  }
}
