// Line diffs, as the Sync panel's conflicts and the Files panel's history show them: aligned
// by the vendored jsdiff (Myers: a shortest edit script), drawn as one line per entry.

import { h } from "./dom.js";
import { diffArrays } from "../vendor/jsdiff/libesm/diff/array.js";

const DIFF_MAX_LINES = 4000;

/**
 * A line diff: [{op: " " | "-" | "+", text}], "-" from `a`, "+" from `b`, a change's removed
 * lines before its added ones. The lines are the texts split at "\n" (a final newline is an
 * empty last line).
 */
export function lineDiff(a, b) {
  const x = a.split("\n");
  const y = b.split("\n");
  // Two long texts are shown whole, one after the other: for texts that differ throughout, the
  // alignment's work grows with the product of their lengths.
  if (x.length * y.length > (DIFF_MAX_LINES * DIFF_MAX_LINES) / 4) {
    return [...x.map((text) => ({ op: "-", text })), ...y.map((text) => ({ op: "+", text }))];
  }
  const out = [];
  for (const part of diffArrays(x, y)) {
    const op = part.added ? "+" : part.removed ? "-" : " ";
    for (const text of part.value) out.push({ op, text });
  }
  return out;
}

/** Appends to `pre` its head lines, then a line per `lineDiff(a, b)` entry. */
export function fillLineDiff(pre, a, b, heads = []) {
  for (const head of heads) pre.appendChild(h("div", { class: "diff-head" }, head));
  for (const line of lineDiff(a, b)) {
    pre.appendChild(h("div", { class: `diff-line${line.op === "+" ? " add" : line.op === "-" ? " del" : ""}` }, `${line.op}${line.text}`));
  }
  return pre;
}

/** An empty, focusable diff box (class `line-diff`) for `fillLineDiff`. */
export function diffBox({ testid, label, className = "" }) {
  return h("pre", { class: `line-diff ${className}`.trim(), testid, tabindex: "0", "aria-label": label });
}
