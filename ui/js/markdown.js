// A tiny, safe markdown renderer for assistant text.
//
// It builds DOM nodes with createElement/textContent only: gateway text is never parsed as HTML,
// so there is nothing to escape and nothing to sanitize. Supported: paragraphs (single newlines
// kept as line breaks), fenced code blocks (with a language label, a Copy button and, once closed,
// syntax highlighting: see highlight.js), headings, lists (ordered, unordered, nested by
// indentation, GitHub task lists "- [ ]" / "- [x]"), GitHub tables (alignment, escaped pipes), block
// quotes, horizontal rules, inline code, bold, italic, strikethrough and [links](https://...)
// (http, https and mailto only).
//
// Streaming: text is cut into segments at blank lines outside code fences, and each segment is
// parsed on its own. So rendering A then B (cut at such a blank line) gives exactly the nodes of
// rendering A+B, which lets the chat render only the unfinished tail of a streaming message each
// frame (see stableBoundary). A table has no blank line inside, so it is always one block of one
// segment. Highlighting is applied later to the nodes returned, the same way however they were cut.

import { highlightLater } from "./highlight.js";

const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;

function isBlank(line) {
  return /^[ \t]*$/.test(line);
}

function fenceOf(line) {
  const m = FENCE_OPEN.exec(line);
  if (!m) return null;
  return { ch: m[1][0], len: m[1].length, lang: m[2] || "" };
}

function closesFence(line, fence) {
  const m = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line);
  return !!m && m[1][0] === fence.ch && m[1].length >= fence.len;
}

/**
 * The end of the last complete segment of text[from:], i.e. the index just after the last
 * newline-terminated blank line outside a code fence; `from` when there is none yet.
 * `from` must itself be such a boundary (or 0).
 */
export function stableBoundary(text, from = 0) {
  let boundary = from;
  let fence = null;
  let pos = from;
  const n = text.length;
  while (pos < n) {
    const nl = text.indexOf("\n", pos);
    if (nl === -1) break; // an unterminated last line is never final
    const line = text.slice(pos, nl);
    if (fence) {
      if (closesFence(line, fence)) fence = null;
    } else if (isBlank(line)) {
      boundary = nl + 1;
    } else {
      const f = fenceOf(line);
      if (f) fence = f;
    }
    pos = nl + 1;
  }
  return boundary;
}

/** Split text into segments (arrays of lines) at blank lines outside code fences. */
function segments(text) {
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let cur = [];
  let fence = null;
  for (const line of lines) {
    if (fence) {
      cur.push(line);
      if (closesFence(line, fence)) fence = null;
      continue;
    }
    if (isBlank(line)) {
      if (cur.length) out.push(cur);
      cur = [];
      continue;
    }
    const f = fenceOf(line);
    if (f) fence = f;
    cur.push(line);
  }
  if (cur.length) out.push(cur);
  return out;
}

/** Render markdown text to an array of top-level DOM nodes. */
export function renderMarkdownNodes(text) {
  const nodes = [];
  for (const seg of segments(text || "")) parseBlocks(seg, nodes);
  return nodes;
}

export function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  for (const node of renderMarkdownNodes(text)) frag.appendChild(node);
  return frag;
}

function startsBlock(line) {
  return !!(fenceOf(line) || HEADING.test(line) || HR.test(line) || QUOTE.test(line) || listItem(line));
}

function listItem(line) {
  const m = LIST_ITEM.exec(line);
  if (!m) return null;
  const marker = m[2];
  const ordered = /\d/.test(marker[0]);
  // "-" or "*" followed by nothing is not a list item (it may be an hr or an emphasis start)
  if (m[3] === undefined && !ordered) return null;
  return {
    indent: m[1].length,
    ordered,
    start: ordered ? parseInt(marker, 10) : 1,
    marker,
    content: m[3] ?? "",
    width: m[1].length + marker.length + 1,
  };
}

function parseBlocks(lines, out) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      i += 1;
      continue;
    }
    const fence = fenceOf(line);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !closesFence(lines[i], fence)) body.push(lines[i++]);
      const closed = i < lines.length;
      if (closed) i += 1; // the closing fence
      out.push(codeBlock(body.join("\n"), fence.lang, closed));
      continue;
    }
    if (tableAt(lines, i)) {
      i = parseTable(lines, i, out);
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      const el = document.createElement(`h${heading[1].length}`);
      appendInline(el, heading[2]);
      out.push(el);
      i += 1;
      continue;
    }
    if (HR.test(line) && !listItem(line)) {
      out.push(document.createElement("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && QUOTE.test(lines[i])) inner.push(QUOTE.exec(lines[i++])[1]);
      const el = document.createElement("blockquote");
      const kids = [];
      parseBlocks(inner, kids);
      for (const k of kids) el.appendChild(k);
      out.push(el);
      continue;
    }
    const item = listItem(line);
    if (item) {
      i = parseList(lines, i, item, out);
      continue;
    }
    // paragraph
    const para = [];
    while (
      i < lines.length &&
      !isBlank(lines[i]) &&
      (para.length === 0 || (!startsBlock(lines[i]) && !tableAt(lines, i)))
    ) {
      para.push(lines[i].replace(/^ {1,3}/, ""));
      i += 1;
    }
    const p = document.createElement("p");
    para.forEach((l, k) => {
      if (k > 0) p.appendChild(document.createElement("br"));
      appendInline(p, l.replace(/\s+$/, ""));
    });
    out.push(p);
  }
}

function parseList(lines, i, first, out) {
  const list = document.createElement(first.ordered ? "ol" : "ul");
  if (first.ordered && first.start !== 1) list.start = first.start;
  const baseIndent = first.indent;
  while (i < lines.length) {
    const item = listItem(lines[i]);
    if (!item || item.indent !== baseIndent || item.ordered !== first.ordered) break;
    const body = [item.content];
    i += 1;
    // continuation lines: anything indented deeper than the marker, or lazy paragraph lines
    while (i < lines.length) {
      const l = lines[i];
      const next = listItem(l);
      if (next && next.indent <= baseIndent) break;
      if (!next && startsBlock(l) && !/^\s/.test(l)) break;
      body.push(l.slice(Math.min(item.width, l.length - l.trimStart().length)));
      i += 1;
    }
    const li = document.createElement("li");
    const rest = body.slice(1);
    const task = TASK.exec(body[0]);
    if (task) {
      // a GitHub task: a checkbox the reader sees but cannot tick, labelled by the item's text
      list.classList.add("task-list");
      li.className = "task-item";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.setAttribute("disabled", "");
      if (task[1] !== " ") box.setAttribute("checked", "");
      const label = document.createElement("label");
      label.appendChild(box);
      const text = document.createElement("span");
      appendInline(text, task[2] ?? "");
      label.appendChild(text);
      li.appendChild(label);
    } else {
      appendInline(li, body[0]);
    }
    if (rest.length) {
      // nested blocks (a sub-list, a code block, a table) or plain continuation text
      if (rest.some((l, k) => listItem(l) || fenceOf(l) || tableAt(rest, k))) {
        const kids = [];
        parseBlocks(rest, kids);
        for (const k of kids) li.appendChild(k);
      } else {
        for (const l of rest) {
          li.appendChild(document.createElement("br"));
          appendInline(li, l.trim());
        }
      }
    }
    list.appendChild(li);
  }
  out.push(list);
  return i;
}

const TASK = /^\[([ xX])\](?:[ \t]+(.*))?$/;

// ---------------------------------------------------------------------------------------------
// Code blocks

/**
 * A fenced code block: its language (the fence's info string, "text" when none), a Copy button
 * that copies the code exactly, and the code, highlighted once the fence is closed (an open fence
 * is the unfinished tail of a streaming message, re-rendered at every piece: it stays plain).
 */
function codeBlock(text, lang, closed) {
  const wrap = document.createElement("div");
  wrap.className = "md-code";
  wrap.dataset.testid = "code-block";
  const head = document.createElement("div");
  head.className = "md-code-head";
  const label = document.createElement("span");
  label.className = "md-code-lang";
  label.dataset.testid = "code-lang";
  label.textContent = lang || "text";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "md-code-copy";
  copy.dataset.testid = "copy-code";
  copy.textContent = COPY;
  head.append(label, copy);
  const pre = document.createElement("pre");
  const code = document.createElement("code");
  if (lang) {
    code.className = `lang-${lang.replace(/[^\w+-]/g, "")}`;
    pre.dataset.lang = lang;
    wrap.dataset.lang = lang;
  }
  code.textContent = text;
  pre.appendChild(code);
  wrap.append(head, pre);
  copy.addEventListener("click", () => copyCode(copy, code, text));
  if (closed) highlightLater(code, lang, text);
  return wrap;
}

const COPY = "Copy code";
const feedback = new WeakMap(); // button -> timer restoring its label

async function copyCode(button, code, text) {
  let said;
  try {
    await navigator.clipboard.writeText(text);
    said = "Copied";
  } catch (_) {
    // no clipboard (an insecure origin, a denied permission): select the code for Ctrl+C instead
    const range = document.createRange();
    range.selectNodeContents(code);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    said = "Press Ctrl+C to copy";
  }
  button.textContent = said;
  clearTimeout(feedback.get(button));
  feedback.set(
    button,
    setTimeout(() => {
      button.textContent = COPY;
    }, 2000),
  );
}

// ---------------------------------------------------------------------------------------------
// Tables (GitHub flavoured)

const DELIMITER_CELL = /^:?-+:?$/;

/** The cells of a table row: split at pipes that are not escaped, outer pipes optional. */
function rowCells(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  const cells = [];
  let cur = "";
  for (let k = 0; k < s.length; k += 1) {
    const c = s[k];
    if (c === "\\" && k + 1 < s.length) {
      cur += c + s[k + 1];
      k += 1;
    } else if (c === "|") {
      cells.push(cur);
      cur = "";
    } else {
      cur += c;
    }
  }
  cells.push(cur);
  // an escaped pipe is a pipe in the cell, inside code spans too
  return cells.map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function hasPipe(line) {
  return /(^|[^\\])\|/.test(line);
}

/** A table starts at lines[i]: a header row, then a delimiter row with as many cells. */
function tableAt(lines, i) {
  if (i + 1 >= lines.length) return null;
  const head = lines[i];
  const delim = lines[i + 1];
  if (!hasPipe(head) || !hasPipe(delim) || /^ {4}/.test(head)) return null;
  const aligns = rowCells(delim);
  if (!aligns.every((cell) => DELIMITER_CELL.test(cell))) return null;
  const cells = rowCells(head);
  if (cells.length !== aligns.length) return null;
  return {
    cells,
    aligns: aligns.map((a) => (a.endsWith(":") ? (a.startsWith(":") ? "center" : "right") : a.startsWith(":") ? "left" : "")),
  };
}

function parseTable(lines, i, out) {
  const { cells, aligns } = tableAt(lines, i);
  const row = (values, tag) => {
    const tr = document.createElement("tr");
    aligns.forEach((align, k) => {
      const cell = document.createElement(tag);
      if (align) cell.dataset.align = align;
      appendInline(cell, values[k] ?? "");
      tr.appendChild(cell);
    });
    return tr;
  };
  const table = document.createElement("table");
  const thead = document.createElement("thead");
  thead.appendChild(row(cells, "th"));
  table.appendChild(thead);
  i += 2;
  const tbody = document.createElement("tbody");
  // body rows run to the end of the segment or to the start of another block
  while (i < lines.length && !isBlank(lines[i]) && !startsBlock(lines[i])) {
    tbody.appendChild(row(rowCells(lines[i]), "td"));
    i += 1;
  }
  if (tbody.firstChild) table.appendChild(tbody);
  // a wide table scrolls in its own box, which the keyboard can reach and scroll
  const wrap = document.createElement("div");
  wrap.className = "md-table";
  wrap.dataset.testid = "md-table";
  wrap.tabIndex = 0;
  wrap.setAttribute("role", "region");
  wrap.setAttribute("aria-label", "Table");
  wrap.appendChild(table);
  out.push(wrap);
  return i;
}

// ---------------------------------------------------------------------------------------------
// Inline

const ESCAPABLE = "\\`*_{}[]()#+-.!~>|";

function safeHref(url) {
  const u = url.trim();
  if (/^(https?:\/\/|mailto:)/i.test(u)) return u;
  return null;
}

/** Append the inline rendering of `text` to `parent`. */
export function appendInline(parent, text) {
  let buf = "";
  const flush = () => {
    if (buf) {
      parent.appendChild(document.createTextNode(buf));
      buf = "";
    }
  };
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === "\\" && i + 1 < n && ESCAPABLE.includes(text[i + 1])) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      let run = 1;
      while (text[i + run] === "`") run += 1;
      const fence = "`".repeat(run);
      const close = findRun(text, fence, i + run);
      if (close !== -1) {
        flush();
        const code = document.createElement("code");
        let inner = text.slice(i + run, close);
        if (/^ .* $/.test(inner)) inner = inner.slice(1, -1);
        code.textContent = inner;
        parent.appendChild(code);
        i = close + run;
        continue;
      }
      buf += fence;
      i += run;
      continue;
    }
    if ((c === "*" || c === "_") && text[i + 1] === c) {
      const marker = c + c;
      const close = findDelimiter(text, marker, i + 2);
      if (close !== -1 && leftFlanking(text, i, 2) && (c === "*" || !isWordChar(text[i - 1]))) {
        flush();
        const el = document.createElement("strong");
        appendInline(el, text.slice(i + 2, close));
        parent.appendChild(el);
        i = close + 2;
        continue;
      }
    }
    if ((c === "*" || c === "_") && text[i + 1] !== c) {
      const close = findDelimiter(text, c, i + 1);
      if (close !== -1 && leftFlanking(text, i, 1) && (c === "*" || !isWordChar(text[i - 1]))) {
        flush();
        const el = document.createElement("em");
        appendInline(el, text.slice(i + 1, close));
        parent.appendChild(el);
        i = close + 1;
        continue;
      }
    }
    if (c === "~" && text[i + 1] === "~") {
      const close = findDelimiter(text, "~~", i + 2);
      if (close !== -1 && leftFlanking(text, i, 2)) {
        flush();
        const el = document.createElement("del");
        appendInline(el, text.slice(i + 2, close));
        parent.appendChild(el);
        i = close + 2;
        continue;
      }
    }
    if (c === "[") {
      const m = /^\[([^\]\n]+)\]\(([^()\s]+)\)/.exec(text.slice(i));
      if (m) {
        const href = safeHref(m[2]);
        flush();
        if (href) {
          const a = document.createElement("a");
          a.href = href;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          appendInline(a, m[1]);
          parent.appendChild(a);
        } else {
          appendInline(parent, m[1]);
        }
        i += m[0].length;
        continue;
      }
    }
    buf += c;
    i += 1;
  }
  flush();
}

function isWordChar(ch) {
  return !!ch && /[\p{L}\p{N}]/u.test(ch);
}

function leftFlanking(text, i, len) {
  const next = text[i + len];
  return !!next && !/\s/.test(next);
}

function findRun(text, run, from) {
  let k = from;
  while (k < text.length) {
    const at = text.indexOf(run, k);
    if (at === -1) return -1;
    // the closing run must be exactly this long
    if (text[at + run.length] !== "`" && text[at - 1] !== "`") return at;
    k = at + 1;
    while (text[k] === "`") k += 1;
  }
  return -1;
}

/** The closing delimiter: not preceded by whitespace, not part of a longer run (for single chars). */
function findDelimiter(text, marker, from) {
  let k = from;
  while (k < text.length) {
    const at = text.indexOf(marker, k);
    if (at === -1) return -1;
    if (at > from && !/\s/.test(text[at - 1])) {
      if (marker.length === 1) {
        if (text[at + 1] === marker) {
          k = at + 2;
          continue;
        }
        if (marker === "_" && isWordChar(text[at + 1])) {
          k = at + 1;
          continue;
        }
      }
      return at;
    }
    k = at + marker.length;
  }
  return -1;
}
