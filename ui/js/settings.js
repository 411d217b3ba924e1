// The Settings screen: $DIM_HOME/config/settings.toml as a form, shown and edited through the bridge.
//
// get_settings -> {path, values, defaults, explicit, schema: [{key, type, choices?, choiceLabels?,
// min?, max?, optional, group, label, help, unit, kind, expect, live, applies}], pendingRestart};
// set_settings {changes: {key: value | null}} saves (null: back to the default) or fails with
// INVALID_ARGUMENTS naming the key (`key`) and saying what to enter (`problem`), and then nothing
// was saved. The words (labels, help, what a valid value is) come from the schema
// (dim_actors/config/settings.py), so the screen, the bridge and a bad file at start say the same.
// Only the fields the user changed are sent. The TOML key is small print under each field.

import { h, clear } from "./dom.js";

const BAD_INPUT = Symbol("bad input"); // a number field holding something that is not a number

function describe(spec, value) {
  if (value === null || value === undefined) return "";
  if (spec.type === "bool") return value ? "on" : "off";
  if (spec.type === "choice") return (spec.choiceLabels && spec.choiceLabels[value]) || String(value);
  if (spec.type === "list") return "";
  if (spec.type === "int" || spec.type === "float") return `${Number(value).toLocaleString()}${spec.unit ? ` ${spec.unit}` : ""}`;
  return String(value);
}

export class SettingsScreen {
  /** openButton: the button that opens the screen; invoke: the bridge's invoke(). */
  constructor(openButton, { invoke }) {
    this.invoke = invoke;
    this.data = null;
    this.inputs = new Map(); // key -> {spec, field, read: () => value, error, wrap, pending}
    this.dialog = h("dialog", { class: "settings", testid: "settings-panel", "aria-labelledby": "settings-title" });
    // novalidate: the bridge judges values, and says what is wrong next to the field.
    this.form = h("form", { class: "settings-form", method: "dialog", novalidate: true });
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
    this.path.textContent = data.path ? `Saved in ${data.path}` : "";
    this.path.title = data.path || "";
    clear(this.fields);
    this.inputs.clear();
    const groups = new Map();
    for (const spec of data.schema || []) {
      const name = spec.group || "Other";
      if (!groups.has(name)) {
        const fieldset = h("fieldset", { class: "settings-group", testid: "settings-group", dataset: { group: name } }, h("legend", null, name));
        groups.set(name, fieldset);
        this.fields.appendChild(fieldset);
      }
      groups.get(name).appendChild(this.renderField(spec, data.values[spec.key], data.defaults[spec.key]));
    }
    this.markPending();
  }

  renderField(spec, value, dflt) {
    const key = spec.key;
    const id = `setting-${key}`;
    const helpId = `${id}-help`;
    const errorId = `${id}-error`;
    const described = `${helpId} ${errorId}`;
    let field;
    let read;
    let control;
    if (spec.type === "bool") {
      field = h("input", { type: "checkbox", id, testid: id, checked: !!value, "aria-describedby": described });
      read = () => field.checked;
    } else if (spec.type === "choice") {
      const labels = spec.choiceLabels || {};
      field = h("select", { id, testid: id, "aria-describedby": described }, (spec.choices || []).map((c) => h("option", { value: c }, labels[c] || c)));
      field.value = value;
      read = () => field.value;
    } else if (spec.type === "list") {
      field = h("textarea", { id, testid: id, rows: 3, spellcheck: "false", placeholder: "one per line", "aria-describedby": described });
      field.value = (value || []).join("\n");
      read = () =>
        field.value
          .split("\n")
          .map((s) => s.trim())
          .filter(Boolean);
    } else if (spec.type === "int" || spec.type === "float") {
      field = h("input", {
        type: "number",
        id,
        testid: id,
        min: typeof spec.min === "number" && !spec.minExclusive ? spec.min : null,
        max: typeof spec.max === "number" ? spec.max : null,
        step: spec.type === "int" ? "1" : "any",
        inputmode: spec.type === "int" ? "numeric" : "decimal",
        autocomplete: "off",
        placeholder: spec.optional ? "not set" : null,
        "aria-describedby": described,
      });
      field.value = value === null || value === undefined ? "" : String(value);
      read = () => {
        if (field.validity && field.validity.badInput) return BAD_INPUT;
        const t = field.value.trim();
        if (t === "") return null;
        const n = Number(t);
        return Number.isFinite(n) ? n : BAD_INPUT;
      };
    } else {
      const path = spec.kind === "path" || spec.kind === "file";
      field = h("input", {
        type: spec.kind === "url" ? "url" : "text",
        id,
        testid: id,
        class: path ? "settings-path-input" : null,
        autocomplete: "off",
        spellcheck: "false",
        placeholder: spec.kind === "url" ? "wss://gateway.example.com/ws" : spec.kind === "path" ? "~/Diminuendo" : spec.optional ? "not set" : null,
        "aria-describedby": described,
      });
      field.value = value ?? "";
      read = () => {
        const t = field.value.trim();
        return t === "" && spec.optional ? null : t;
      };
    }
    const label = h("label", { for: id, class: "settings-label" }, spec.label || key);
    if (spec.type === "bool") control = h("div", { class: "settings-control settings-check" }, field, label);
    else control = h("div", { class: "settings-control" }, field, spec.unit ? h("span", { class: "settings-unit muted" }, spec.unit) : null);
    const shownDefault = describe(spec, dflt);
    const help = h(
      "div",
      { class: "muted small settings-help", id: helpId },
      [spec.help, shownDefault ? `Default: ${shownDefault}.` : "", spec.applies || ""].filter(Boolean).join(" "),
    );
    const error = h("div", { class: "settings-field-error", id: errorId, testid: "settings-field-error", hidden: true });
    const pending = h("div", { class: "settings-pending small", testid: "setting-pending", hidden: true }, "Saved — takes effect when dim-desktop restarts.");
    const keyNote = h("div", { class: "settings-key", title: "The key in settings.toml" }, key);
    const wrap = h("div", { class: `settings-field type-${spec.type}`, dataset: { key } }, spec.type === "bool" ? null : label, control, help, error, pending, keyNote);
    field.addEventListener("input", () => this.clearFieldError(key));
    this.inputs.set(key, { spec, field, read, error, wrap, pending });
    return wrap;
  }

  markPending() {
    const pending = new Set((this.data && this.data.pendingRestart) || []);
    for (const [key, { pending: el }] of this.inputs) el.hidden = !pending.has(key);
  }

  changes() {
    const out = {};
    const values = this.data ? this.data.values : {};
    for (const [key, { read }] of this.inputs) {
      const now = read();
      if (now === BAD_INPUT || JSON.stringify(now) !== JSON.stringify(values[key] ?? null)) out[key] = now;
    }
    return out;
  }

  async submit() {
    const changes = this.changes();
    this.showError(null);
    // A number field holding text never reaches the bridge (the browser keeps no value for it):
    // the same words the bridge would use.
    const bad = Object.keys(changes).find((k) => changes[k] === BAD_INPUT);
    if (bad) {
      const { spec } = this.inputs.get(bad);
      this.showError({ key: bad, details: { problem: spec.expect || "Enter a number" } });
      this.status.textContent = "Not saved: the previous settings are kept.";
      return;
    }
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
    if (!pending.length) return "";
    return pending.length === 1 ? "One change takes effect when dim-desktop restarts." : `${pending.length} changes take effect when dim-desktop restarts.`;
  }

  clearFieldError(key) {
    const input = this.inputs.get(key);
    if (!input) return;
    input.field.removeAttribute("aria-invalid");
    input.error.hidden = true;
    input.error.textContent = "";
    input.wrap.classList.remove("invalid");
  }

  showError(err) {
    for (const key of this.inputs.keys()) this.clearFieldError(key);
    if (!err) {
      this.error.hidden = true;
      this.error.textContent = "";
      this.error.removeAttribute("data-key");
      return;
    }
    // The bridge's message starts "set_settings: KEY: ..." (the error's key holds the same KEY,
    // its problem the rest, in words).
    const message = err.message || String(err);
    const m = /^\w+_settings: ([a-z0-9_]+): (.*)$/s.exec(message);
    const key = err.key || (m && this.inputs.has(m[1]) ? m[1] : null);
    const problem = (err.details && err.details.problem) || (m ? m[2] : message);
    const input = key ? this.inputs.get(key) : null;
    this.error.hidden = false;
    if (input) {
      this.error.textContent = `Not saved: “${input.spec.label || key}”: ${problem}`;
      this.error.dataset.key = key;
      input.error.textContent = problem;
      input.error.hidden = false;
      input.wrap.classList.add("invalid");
      input.field.setAttribute("aria-invalid", "true");
      input.field.focus();
    } else {
      this.error.textContent = message;
      if (key) this.error.dataset.key = key;
    }
  }
}
