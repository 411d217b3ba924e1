"""Markdown in the chat as a real headless Chromium shows it: GitHub tables and task lists, code
blocks with a language label, a Copy button and syntax highlighting by the vendored highlight.js
(ui/vendor/highlightjs/, fetched by bin/vendor-js), and gateway text that never becomes markup.

Messages go through the real app and dev gateway: the `echo` agent streams the text it is sent back
word by word as the assistant's answer; the `coding-agent`'s `/emit text_delta` streams pieces cut
where a test wants them."""

from __future__ import annotations

import hashlib
import json
import re
from base64 import b64encode

import pytest
from apphelpers import ROOT, App
from playwright.sync_api import Locator, Page, expect

UI_WAIT_MS = 60_000
VENDORED = ROOT / "ui" / "vendor" / "highlightjs"


@pytest.fixture(scope="module")
def chat(browser, tmp_path_factory):
    """The app's page, with a clipboard, loaded once for the module: each test sends its own
    message and reads its own answer."""
    app = App(tmp_path_factory.mktemp("dim-home"))
    app.wait_connected()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=app.base)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app.runtime["uiUrl"])
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    page.page_errors = errors  # type: ignore[attr-defined]
    page.sessions = {}  # type: ignore[attr-defined]
    yield page
    context.close()
    app.stop()


def session(page: Page, agent: str) -> dict:
    """Select this module's session of `agent`, creating it the first time, and wait for the chat
    to show it (the turns it had)."""
    known = page.sessions.get(agent)  # type: ignore[attr-defined]
    if known is None:
        items = page.get_by_test_id("session-item")
        existing = items.count()
        page.get_by_test_id("agent-type").select_option(agent)
        page.get_by_test_id("new-session").click()
        expect(items).to_have_count(existing + 1, timeout=UI_WAIT_MS)
        # the new session, selected: none of those this module made before
        item = page.locator("[data-testid='session-item'][aria-selected='true']")
        for other in page.sessions.values():  # type: ignore[attr-defined]
            item = item.and_(page.locator(f":not([data-session-id='{other['id']}'])"))
        expect(item).to_have_count(1, timeout=UI_WAIT_MS)
        expect(item.get_by_test_id("session-status")).to_have_attribute(
            "data-status", "ready", timeout=UI_WAIT_MS
        )
        known = {"id": item.get_attribute("data-session-id"), "turns": 0}
        page.sessions[agent] = known  # type: ignore[attr-defined]
    item = page.locator(
        f"[data-testid='session-item'][data-session-id='{known['id']}']"
    )
    if item.get_attribute("aria-selected") != "true":
        item.click()
    expect(item).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("turn")).to_have_count(
        known["turns"], timeout=UI_WAIT_MS
    )
    expect(page.get_by_test_id("message-input")).to_be_enabled(timeout=UI_WAIT_MS)
    return known


def say(page: Page, text: str, agent: str = "echo") -> Locator:
    """Send `text`; the answer's rendered markdown once its turn is complete."""
    known = session(page, agent)
    turns = page.get_by_test_id("turn")
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("send").click()
    known["turns"] += 1
    expect(turns).to_have_count(known["turns"], timeout=UI_WAIT_MS)
    turn = turns.last
    expect(turn).to_have_attribute("data-status", "complete", timeout=UI_WAIT_MS)
    return turn.get_by_test_id("assistant-text")


def highlighted(block: Locator) -> None:
    """Wait for the highlighter to have done with a code block, whatever it decided."""
    expect(block.locator("code[data-highlight]")).to_have_count(1, timeout=UI_WAIT_MS)


# ---------------------------------------------------------------------------------------------
# Tables


TABLE = """| Name | Kind | Size |
|:-----|:----:|-----:|
| `parse()` | **function** | 12 |
| a \\| b | plain | 3 |
| `x \\| y` | code | 100 |"""


def test_a_table_shows_its_header_alignment_and_inline_markdown(chat: Page):
    md = say(chat, TABLE)
    table = md.get_by_test_id("md-table").locator("table")
    expect(table).to_have_count(1)
    expect(table.locator("thead th")).to_have_text(["Name", "Kind", "Size"])
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).locator("td")).to_have_text(["parse()", "function", "12"])
    expect(rows.nth(0).locator("td").nth(0).locator("code")).to_have_text("parse()")
    expect(rows.nth(0).locator("td").nth(1).locator("strong")).to_have_text("function")
    # an escaped pipe is a pipe in the cell, in code too, and does not start a new cell
    expect(rows.nth(1).locator("td")).to_have_text(["a | b", "plain", "3"])
    expect(rows.nth(2).locator("td").nth(0).locator("code")).to_have_text("x | y")
    aligns = (
        table.locator("tbody tr")
        .first.locator("td")
        .evaluate_all("cells => cells.map((c) => getComputedStyle(c).textAlign)")
    )
    assert aligns == ["left", "center", "right"]
    assert "|" not in md.locator("p").all_inner_texts().__str__()
    assert chat.page_errors == []  # type: ignore[attr-defined]


def test_a_table_wider_than_the_chat_scrolls_in_its_own_box(chat: Page):
    cols = 14
    head = "| " + " | ".join(f"column_number_{i}" for i in range(cols)) + " |"
    delim = "|" + "---|" * cols
    row = "| " + " | ".join(f"value_{i}_unbreakable" for i in range(cols)) + " |"
    md = say(chat, "\n".join([head, delim, row]))
    box = md.get_by_test_id("md-table")
    expect(box).to_have_count(1)
    expect(box).to_have_attribute("role", "region")
    widths = box.evaluate(
        """(box) => {
          const chat = document.querySelector("[data-testid='chat']");
          return {box: [box.scrollWidth, box.clientWidth],
                  chat: [chat.scrollWidth, chat.clientWidth]};
        }"""
    )
    assert widths["box"][0] > widths["box"][1]
    assert widths["chat"][0] <= widths["chat"][1]


# ---------------------------------------------------------------------------------------------
# Task lists


def test_a_task_list_shows_disabled_checkboxes_labelled_by_their_items(chat: Page):
    md = say(
        chat, "Plan:\n\n- [x] read the code\n- [ ] write the **tests**\n- [X] ship it"
    )
    boxes = md.get_by_role("checkbox")
    expect(boxes).to_have_count(3)
    done = md.get_by_role("checkbox", name="read the code")
    expect(done).to_be_checked()
    expect(done).to_be_disabled()
    todo = md.get_by_role("checkbox", name="write the tests")
    expect(todo).not_to_be_checked()
    expect(todo).to_be_disabled()
    expect(md.get_by_role("checkbox", name="ship it")).to_be_checked()
    expect(md.locator("li")).to_have_text(
        ["read the code", "write the tests", "ship it"]
    )
    assert "[x]" not in md.inner_text() and "[ ]" not in md.inner_text()


# ---------------------------------------------------------------------------------------------
# Code blocks

PYTHON = 'def greet(name):\n    # say hello\n    return f"hi {name}"  \n\tprint(42)'


def test_a_code_block_shows_its_language_and_highlighted_tokens(chat: Page):
    md = say(chat, f"Here:\n\n```python\n{PYTHON}\n```")
    block = md.get_by_test_id("code-block")
    expect(block.get_by_test_id("code-lang")).to_have_text("python")
    expect(block.get_by_role("button", name="Copy code")).to_be_visible()
    highlighted(block)
    code = block.locator("code")
    expect(code).to_have_attribute("data-highlight", "done")
    expect(code.locator("span.hljs-keyword").first).to_have_text("def")
    expect(code.locator("span.hljs-comment")).to_have_text("# say hello")
    expect(code.locator("span.hljs-string").first).to_contain_text('f"hi')
    expect(code.locator("span.hljs-number")).to_have_text("42")
    assert code.evaluate("c => c.textContent") == PYTHON
    # the colours differ from the plain text's, in light and in dark
    for scheme in ("light", "dark"):
        chat.emulate_media(color_scheme=scheme)
        colours = code.evaluate(
            """(c) => [getComputedStyle(c).color,
                       getComputedStyle(c.querySelector('.hljs-keyword')).color]"""
        )
        assert colours[0] != colours[1], scheme
    chat.emulate_media(color_scheme="light")


def test_aliases_name_the_same_grammars(chat: Page):
    md = say(
        chat,
        "```js\nconst a = 1;\n```\n\n```sh\necho hi\n```\n\n```toml\n[x]\ny = 1\n```",
    )
    blocks = md.get_by_test_id("code-block")
    expect(blocks.get_by_test_id("code-lang")).to_have_text(["js", "sh", "toml"])
    for i in range(3):
        highlighted(blocks.nth(i))
        expect(blocks.nth(i).locator("code")).to_have_attribute(
            "data-highlight", "done"
        )
    expect(blocks.nth(0).locator(".hljs-keyword")).to_have_text("const")
    expect(blocks.nth(1).locator(".hljs-built_in")).to_have_text("echo")
    expect(blocks.nth(2).locator(".hljs-section")).to_have_text("[x]")


def test_copy_puts_the_exact_code_on_the_clipboard(chat: Page):
    code = 'x = "a\\tb"\n\n    indented\t\ttabs  \n<not html> & more'
    md = say(chat, f"```python\n{code}\n```")
    block = md.get_by_test_id("code-block")
    highlighted(block)
    chat.evaluate("navigator.clipboard.writeText('something else')")
    button = block.get_by_role("button", name="Copy code")
    button.click()
    expect(block.get_by_test_id("copy-code")).to_have_text("Copied")
    assert chat.evaluate("navigator.clipboard.readText()") == code
    # the label comes back for the next copy
    expect(block.get_by_test_id("copy-code")).to_have_text("Copy code")


def test_a_code_block_without_a_language_is_plain_text(chat: Page):
    md = say(chat, "```\nplain words here\n```")
    block = md.get_by_test_id("code-block")
    expect(block.get_by_test_id("code-lang")).to_have_text("text")
    highlighted(block)
    expect(block.locator("code")).to_have_attribute("data-highlight", "plain")
    expect(block.locator("code span")).to_have_count(0)
    expect(block.locator("code")).to_have_text("plain words here")


def test_a_language_the_page_does_not_know_is_plain_with_its_label(chat: Page):
    md = say(chat, "```brainfudge\n++[>+<-]. def class\n```")
    block = md.get_by_test_id("code-block")
    expect(block.get_by_test_id("code-lang")).to_have_text("brainfudge")
    highlighted(block)
    expect(block.locator("code")).to_have_attribute("data-highlight", "plain")
    expect(block.locator("code span")).to_have_count(0)
    expect(block.locator("code")).to_have_text("++[>+<-]. def class")
    assert chat.page_errors == []  # type: ignore[attr-defined]


HOSTILE = (
    "<img src=x onerror=\"window.__pwned='img'\">\n"
    "</code><script>window.__pwned='script'</script>"
)


@pytest.mark.parametrize("lang", ["html", "python", ""])
def test_markup_in_a_code_block_is_shown_as_text(chat: Page, lang: str):
    md = say(chat, f"```{lang}\n{HOSTILE}\n```\n\nafter <b>bold?</b>")
    block = md.get_by_test_id("code-block")
    highlighted(block)
    code = block.locator("code")
    if lang == "html":
        # highlighted: the tag names are tokens, and still only text
        expect(code.locator(".hljs-name").first).to_have_text("img")
    assert code.evaluate("c => c.textContent") == HOSTILE
    assert md.locator("img, script, b").count() == 0
    # nothing but highlight.js's spans inside the code
    assert code.evaluate(
        "c => [...c.querySelectorAll('*')].every((e) => e.localName === 'span')"
    )
    assert chat.evaluate("window.__pwned === undefined")
    expect(md.locator("p").last).to_have_text("after <b>bold?</b>")


# ---------------------------------------------------------------------------------------------
# Streaming renders what rendering at once does

STREAMED = [
    "Results:\n\n| Test | Res",
    "ult |\n|:--|--:|\n| `a` | **ok** |\n| b \\",
    "| c | 3 |\n\n- [x] done\n- [ ] ",
    "todo\n\n```pyt",
    "hon\ndef f(x):\n    return x",
    " + 1\n``",
    "`\nAnd a tail.",
]

AT_ONCE = """async (text) => {
  const { renderMarkdownNodes } = await import("/js/markdown.js");
  const host = document.createElement("div");
  host.className = "md";
  host.id = "at-once";
  host.style.cssText = "position: fixed; inset: 0; z-index: 9999; background: white;";
  host.append(...renderMarkdownNodes(text));
  document.body.append(host);
}"""

# Counts the tables and code blocks the chat renders, however short-lived.
WATCH = """() => {
  window.__seen = { table: 0, code: 0 };
  new MutationObserver((records) => {
    for (const r of records) {
      for (const n of r.addedNodes) {
        if (n.nodeType !== 1) continue;
        window.__seen.table += n.querySelectorAll("table").length + (n.localName === "table");
        window.__seen.code += n.querySelectorAll(".md-code").length + n.matches(".md-code");
      }
    }
  }).observe(document.querySelector("[data-testid='chat']"), { childList: true, subtree: true });
}"""

# The markdown nodes a message shows, leaving out the chat's grouping of them into chunks.
NODES = """(el) => [...el.children]
  .flatMap((c) => (c.classList.contains("md-chunk") ? [...c.children] : [c]))
  .map((n) => n.outerHTML)"""


def test_a_streamed_table_and_code_block_end_as_rendered_at_once(chat: Page):
    script = [
        f"/emit text_delta {json.dumps({'text': piece})}\n/sleep 150"
        for piece in STREAMED
    ]
    session(chat, "coding-agent")
    chat.evaluate(WATCH)
    md = say(chat, "\n".join(script), agent="coding-agent")
    text = "".join(STREAMED)
    # it did stream: the unfinished table and code block were rendered over and over
    seen = chat.evaluate("window.__seen")
    assert seen["table"] > 1 and seen["code"] > 1, seen
    expect(md.get_by_test_id("md-table").locator("tbody tr")).to_have_count(2)
    expect(md.get_by_role("checkbox")).to_have_count(2)
    highlighted(md.get_by_test_id("code-block"))
    streamed = md.evaluate(NODES)
    chat.evaluate(AT_ONCE, text)
    at_once = chat.locator("#at-once")
    try:
        highlighted(at_once.get_by_test_id("code-block"))
        assert at_once.evaluate(NODES) == streamed
    finally:
        at_once.evaluate("el => el.remove()")
    assert any("hljs-keyword" in n for n in streamed)
    assert any("<table>" in n for n in streamed)


# ---------------------------------------------------------------------------------------------
# The vendored highlighter


def pinned() -> dict[str, str]:
    src = (ROOT / "bin" / "vendor-js").read_text()
    return dict(re.findall(r"^(HLJS_\w+)=([^\s(]+)$", src, re.M))


def test_the_vendored_highlighter_is_the_pinned_release_unchanged():
    pins = pinned()
    version = pins["HLJS_VERSION"]
    readme = (VENDORED / "README.md").read_text()
    assert f"`{pins['HLJS_PACKAGE']}`" in readme and f"version {version}" in readme
    assert pins["HLJS_INTEGRITY"] in readme
    assert "BSD 3-Clause License" in (VENDORED / "LICENSE").read_text()
    core = (VENDORED / "es" / "core.js").read_text()
    assert f"Highlight.js v{version} " in core
    assert core.rstrip().endswith("export { highlight as default };")
    # every grammar the page registers is vendored, built for this release, and imports nothing
    page_grammars = re.search(
        r"const GRAMMARS = \[(.*?)\];",
        (ROOT / "ui" / "js" / "highlight.js").read_text(),
        re.S,
    )
    assert page_grammars
    names = re.findall(r'"([\w-]+)"', page_grammars.group(1))
    listed = sorted(p.name for p in (VENDORED / "es" / "languages").iterdir())
    assert listed == sorted(f"{n}.min.js" for n in names)
    for name in names:
        grammar = (VENDORED / "es" / "languages" / f"{name}.min.js").read_text()
        assert f"`{name}` grammar compiled for Highlight.js {version}" in grammar
        assert grammar.rstrip().endswith("export default hljsGrammar;")
        assert not re.search(r"(?:^|[;\n])\s*import\b|\bimport\s*\(", grammar)
        assert f"- `es/languages/{name}.min.js`" in readme


def test_the_bridge_serves_the_highlighter_as_javascript(chat: Page):
    """A module script in another MIME type is refused by the browser: highlighting would fail."""
    for path in ("es/core.js", "es/languages/python.min.js"):
        status, content_type, digest = chat.evaluate(
            """async (path) => {
              const r = await fetch(path);
              const bytes = await r.arrayBuffer();
              const hash = await crypto.subtle.digest("SHA-256", bytes);
              return [r.status, r.headers.get("content-type"),
                      btoa(String.fromCharCode(...new Uint8Array(hash)))];
            }""",
            f"/vendor/highlightjs/{path}",
        )
        assert status == 200
        assert content_type.split(";")[0] in {
            "text/javascript",
            "application/javascript",
        }
        assert (
            digest
            == b64encode(
                hashlib.sha256((VENDORED / path).read_bytes()).digest()
            ).decode()
        )


RENDER = """async (text) => {
  const { renderMarkdownNodes } = await import("/js/markdown.js");
  const host = document.createElement("div");
  host.append(...renderMarkdownNodes(text));
  return [...host.children].map((n) => [n.localName, n.className, n.textContent]);
}"""


@pytest.mark.parametrize(
    ("text", "blocks"),
    [
        ("a | b\nno delimiter", [("p", "", "a | bno delimiter")]),
        ("a | b\n--- | -- | ---\n1 | 2", [("p", "", "a | b--- | -- | ---1 | 2")]),
        (
            "Intro line\n| a | b |\n|---|---|\n| 1 | 2 |\n# After",
            [("p", "", "Intro line"), ("div", "md-table", "ab12"), ("h1", "", "After")],
        ),
        ("a|b\n-|-\n1", [("div", "md-table", "ab1")]),
        ("> | q | r |\n> |---|---|\n> | 1 | 2 |", [("blockquote", "", "qr12")]),
        ("- [x]\n- [ ] b\n  - [x] nested", [("ul", "task-list", "bnested")]),
        (
            "- [y] not a task\n- [x]not either",
            [("ul", "", "[y] not a task[x]not either")],
        ),
        ("```py\nopen fence", [("div", "md-code", "pyCopy codeopen fence")]),
    ],
    ids=[
        "a pipe without a delimiter row",
        "a delimiter row of another width",
        "a table between a paragraph and a heading",
        "no outer pipes",
        "in a quote",
        "tasks, empty and nested",
        "not tasks",
        "an unfinished code block",
    ],
)
def test_what_is_and_is_not_a_table_or_a_task(chat: Page, text: str, blocks: list):
    assert [tuple(b) for b in chat.evaluate(RENDER, text)] == blocks


def test_an_unfinished_code_block_stays_plain_until_its_fence_closes(chat: Page):
    chat.evaluate(AT_ONCE, "```python\nx = 1\n```\n\n```python\ny = 2")
    host = chat.locator("#at-once")
    try:
        blocks = host.get_by_test_id("code-block")
        expect(blocks.nth(0).locator("code")).to_have_attribute(
            "data-highlight", "done"
        )
        expect(blocks.nth(0).locator("code .hljs-number")).to_have_text("1")
        # the first block was highlighted in the same pass that would have done the second
        assert blocks.nth(1).locator("code").get_attribute("data-highlight") is None
        assert blocks.nth(1).locator("code span").count() == 0
        expect(blocks.nth(1).get_by_test_id("code-lang")).to_have_text("python")
    finally:
        host.evaluate("el => el.remove()")
