"""The accessibility audit: axe-core (vendored in tests/vendor/axe-core/ by bin/vendor-js, injected
by Playwright, never served to users) runs the WCAG 2.0 and 2.1 A and AA rules on each screen of the
page in a real headless Chromium, light and dark, and no violation of impact "serious" or
"critical" may remain.

Each test builds its content once through the real app and its embedded dev gateway (the scripted
`coding-agent`, a real sync folder), then audits several screens of it, each in both colour
schemes, rather than starting an app per screen."""

from __future__ import annotations

import json
import re
from pathlib import Path

from apphelpers import ROOT, wait_until
from playwright.sync_api import Page, expect
from uihelpers import new_session, ready, run_turn, send_turn

T = 60_000  # ms: generous for 2 shared, busy cores; a passing run waits far less
AXE = ROOT / "tests" / "vendor" / "axe-core"
SCHEMES = ("light", "dark")
# What the issue asks of each screen: WCAG 2.0 and 2.1, levels A and AA.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = {"serious", "critical"}

# A question answered and one left open, a tool call, a terminal, a plan, a file change and rich
# markdown (code, a table, a task list), in the order they stream.
PLAN = [
    {"stepId": "s1", "title": "Read the code"},
    {"stepId": "s2", "title": "Fix the bug"},
    {"stepId": "s3", "title": "Test it"},
]
MARKDOWN = """## What I found

The parser drops the **last** token. Here is the fix:

```python
def parse(tokens):
    return [t for t in tokens if t]  # keep every token
```

| File | Change | Lines |
|:-----|:------:|------:|
| `parser.py` | fixed | 3 |
| `test_parser.py` | added | 12 |

- [x] Find the bug
- [ ] Write the release notes

See [the docs](https://example.com/docs) and `parse()`."""
RICH = "\n".join(
    [
        "Before I change anything, a question.",
        "/ask Which file? | src/parser.py | src/lexer.py",
        "/think weighing the options",
        '/tool read_file {"path": "src/parser.py"}',
        "/tool-error lint unused import",
        "/terminal pytest -q\\n3 passed",
        "/emit plan.created " + json.dumps({"planId": "p1", "steps": PLAN}),
        '/emit plan.step_started {"planId": "p1", "stepId": "s1"}',
        '/emit plan.step_completed {"planId": "p1", "stepId": "s1", "summary": "read 3 files"}',
        '/emit plan.step_started {"planId": "p1", "stepId": "s2"}',
        "/write src/parser.py def parse(tokens):\\n    return tokens\\n",
        "/emit text_delta " + json.dumps({"text": "\n" + MARKDOWN + "\n"}),
        '/emit usage_update {"inputTokens": 1200, "outputTokens": 340}',
        "/ask Shall I also update the changelog? | yes | no",
    ]
)


# ---------------------------------------------------------------------------------------------
# The audit


def audit(page: Page, where: str, found: list[str]) -> None:
    """Run axe on the page as it is now, in light and then in dark; add a readable line for each
    serious or critical violation to `found`."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE / "axe.min.js"))
    for scheme in SCHEMES:
        page.emulate_media(color_scheme=scheme)
        # the scheme is applied once the page's own colours say so
        page.wait_for_function(
            "(dark) => matchMedia('(prefers-color-scheme: dark)').matches === dark",
            arg=scheme == "dark",
        )
        # colours are measured as they end, not halfway through a fade (a pulse that never
        # ends is measured as it is)
        page.wait_for_function(
            """() => document.getAnimations().every((a) => a.playState !== "running"
                   || a.effect.getComputedTiming().endTime === Infinity)"""
        )
        result = page.evaluate(
            """async (tags) => {
              const r = await axe.run(document, {runOnly: {type: "tag", values: tags},
                                                 resultTypes: ["violations"]});
              return r.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => ({target: n.target.join(" "),
                                            impact: n.impact, summary: n.failureSummary})),
              }));
            }""",
            TAGS,
        )
        for v in result:
            nodes = [n for n in v["nodes"] if n["impact"] in BLOCKING]
            if not nodes:
                continue
            lines = [f"{where} ({scheme}): {v['id']} [{v['impact']}] {v['help']}"]
            for n in nodes[:8]:
                summary = " ".join(n["summary"].split())[:240]
                lines.append(f"    {n['target']}: {summary}")
            if len(nodes) > 8:
                lines.append(f"    … and {len(nodes) - 8} more")
            found.append("\n".join(lines))
    page.emulate_media(color_scheme="light")


def verdict(page: Page, found: list[str]) -> None:
    assert not found, (
        f"{len(found)} serious or critical accessibility violations:\n\n"
        + "\n\n".join(found)
    )
    assert page.page_errors == []  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Driving the page
def open_tab(page: Page, name: str):
    page.get_by_test_id(f"side-tab-{name}").click()
    panel = page.get_by_test_id(f"{name}-panel")
    expect(panel).to_be_visible()
    return panel


def rich_session(page: Page, folder: Path) -> str:
    """A coding-agent session with a file in two versions, a synced folder with one conflict, and
    a turn of every kind of card, its second question still open."""
    sid = new_session(page)
    run_turn(page, "/write notes.md line one\\nline two\\n")
    sync = open_tab(page, "sync")
    sync.get_by_test_id("sync-dir").fill(str(folder))
    sync.get_by_test_id("sync-start").click()
    state = sync.get_by_test_id("sync-state")
    expect(state).to_have_attribute("data-state", "active", timeout=T)
    wait_until(
        lambda: (folder / "notes.md").is_file(), T / 1000, what="the synced file"
    )
    sync.get_by_test_id("sync-stop").click()
    expect(state).to_have_attribute("data-state", "stopped", timeout=T)
    # both sides change the file while sync is stopped: a conflict once it starts again
    (folder / "notes.md").write_text("line one\nmy line\n")
    run_turn(page, "/write notes.md line one\\nagent line\\n")
    sync.get_by_test_id("sync-start").click()
    expect(sync.get_by_test_id("sync-conflict")).to_have_count(1, timeout=T)

    send_turn(page, RICH)
    turn = page.get_by_test_id("turn").last
    question = turn.get_by_test_id("question")
    expect(question).to_have_count(1, timeout=T)
    question.get_by_test_id("answer-option").filter(has_text="src/parser.py").click()
    expect(turn.get_by_test_id("question-resolved")).to_have_count(1, timeout=T)
    expect(turn.get_by_test_id("question")).to_contain_text("changelog", timeout=T)
    expect(turn).to_have_attribute("data-status", "waiting", timeout=T)
    for testid in ("thinking", "terminal", "plan", "file-changed", "md-table", "usage"):
        expect(turn.get_by_test_id(testid)).to_have_count(1, timeout=T)
    expect(turn.get_by_test_id("tool-card")).to_have_count(2, timeout=T)
    expect(turn.locator("code[data-highlight]")).to_have_count(1, timeout=T)
    expect(turn.locator("input[type='checkbox']")).to_have_count(2, timeout=T)
    return sid


def hover(page: Page, target, shown: str) -> None:
    """Hover `target` and wait until what hovering shows (`shown`, a selector) has faded in,
    so its colours are audited as they end."""
    target.hover()
    page.wait_for_function(
        "(sel) => [...document.querySelectorAll(sel)]"
        ".some((el) => getComputedStyle(el).opacity === '1')",
        arg=shown,
    )


# ---------------------------------------------------------------------------------------------
# The tests


def test_the_vendored_axe_is_the_pinned_release_unchanged():
    src = (ROOT / "bin" / "vendor-js").read_text()
    pins = dict(re.findall(r"^(AXE_\w+)=([^\s(]+)$", src, re.M))
    version = pins["AXE_VERSION"]
    assert version.startswith("4.")
    readme = (AXE / "README.md").read_text()
    assert f"`{pins['AXE_PACKAGE']}`" in readme and f"version {version}" in readme
    assert pins["AXE_INTEGRITY"] in readme
    assert "licence MPL-2.0" in readme
    assert (
        (AXE / "LICENSE").read_text().startswith("Mozilla Public License, version 2.0")
    )
    assert "MIT License" in (AXE / "LICENSE-3RD-PARTY.txt").read_text()
    axe = (AXE / "axe.min.js").read_text()
    assert axe.startswith(f"/*! axe v{version}\n")
    assert f'axe.version="{version}"' in axe
    assert sorted(p.name for p in AXE.iterdir()) == [
        "LICENSE",
        "LICENSE-3RD-PARTY.txt",
        "README.md",
        "axe.min.js",
    ]


def test_the_start_the_chat_and_their_dialogs(page: Page, app, tmp_path: Path):
    found: list[str] = []
    ready(page)
    audit(page, "the empty start", found)

    # several sessions, the last a rich one
    new_session(page, "echo")
    run_turn(page, "apple pie recipe")
    run_turn(page, "the crust needs butter")
    new_session(page, "echo")
    run_turn(page, "cherry tart")
    rich_session(page, tmp_path / "synced")
    # Copy and Retry show while a turn is hovered
    hover(page, page.get_by_test_id("user-text").last, ".turn:hover .msg-actions")
    audit(page, "a chat with rich content and the Sync tab", found)

    # the session list's search, and its results in messages
    search = page.get_by_test_id("session-search")
    search.fill("butter")
    expect(page.get_by_test_id("search-result")).to_have_count(2, timeout=T)
    audit(page, "the session search results", found)
    search.press("Escape")
    expect(page.get_by_test_id("search-results-panel")).to_be_hidden()

    # find in the chat
    page.get_by_test_id("chat").focus()
    page.keyboard.press("Control+F")
    page.get_by_test_id("find-input").fill("parser")
    expect(page.get_by_test_id("find-count")).to_have_text(re.compile(r"^1 of \d+$"))
    # a session row's actions show while it is hovered
    hover(
        page,
        page.get_by_test_id("session-item").filter(has_text="apple pie"),
        ".session-item:hover .session-actions",
    )
    audit(page, "the find bar", found)
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("find-bar")).to_be_hidden()

    # the "?" dialog
    page.get_by_test_id("chat").focus()
    page.keyboard.press("?")
    expect(page.get_by_test_id("shortcuts-dialog")).to_be_visible()
    audit(page, "the shortcuts dialog", found)
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("shortcuts-dialog")).to_be_hidden()

    # the delete dialog
    selected = page.locator("[data-testid='session-item'][aria-selected='true']")
    selected.focus()
    page.keyboard.press("Delete")
    expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
    audit(page, "the delete dialog", found)
    page.get_by_test_id("confirm-cancel").click()
    expect(page.get_by_test_id("confirm-dialog")).to_be_hidden()

    # the connection's popover
    page.get_by_test_id("connection-state").click()
    expect(page.get_by_test_id("conn-protocol")).to_contain_text("v1", timeout=T)
    audit(page, "the connection popover", found)
    page.get_by_test_id("connection-state").click()
    expect(page.get_by_test_id("conn-protocol")).to_be_hidden()

    # Settings
    page.get_by_test_id("settings-open").click()
    expect(page.get_by_test_id("settings-panel")).to_be_visible()
    expect(page.get_by_test_id("settings-save")).to_be_visible(timeout=T)
    audit(page, "Settings", found)
    page.get_by_test_id("settings-close").click()
    expect(page.get_by_test_id("settings-panel")).to_be_hidden()

    # Diagnostics, with a message log open
    page.get_by_test_id("diagnostics-open").click()
    expect(page.get_by_test_id("diagnostics")).to_be_visible()
    router = page.locator("[data-testid='actor-row'][data-actor='router']")
    router.get_by_test_id("actor-logs").click()
    expect(page.get_by_test_id("actor-log-lines")).to_contain_text("invoke", timeout=T)
    page.get_by_test_id("members-panel").locator("summary").click()
    expect(page.get_by_test_id("members-status")).not_to_have_text(
        "Loading…", timeout=T
    )
    audit(page, "Diagnostics with a message log", found)
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("diagnostics")).to_be_hidden()

    # the workspace tabs: Files with a file's diff, History
    files = open_tab(page, "files")
    files.locator("[data-testid='file-item'][data-path='notes.md']").click()
    expect(files.get_by_test_id("file-content")).to_be_visible(timeout=T)
    audit(page, "the Files tab with a file open", found)
    files.get_by_test_id("file-diff-show").click()
    expect(files.get_by_test_id("file-diff")).to_contain_text("+", timeout=T)
    audit(page, "the Files tab with a diff", found)
    history = open_tab(page, "history")
    expect(history.get_by_test_id("history-turn")).to_have_count(3, timeout=T)
    history.get_by_test_id("history-show-events").first.click()
    expect(history.get_by_test_id("history-event").first).to_be_visible(timeout=T)
    audit(page, "the History tab", found)
    # the folder picker, for a session not synced yet
    page.get_by_test_id("session-item").filter(has_text="cherry tart").click()
    expect(page.get_by_test_id("chat-title")).to_have_text("cherry tart", timeout=T)
    sync = open_tab(page, "sync")
    sync.get_by_test_id("sync-choose").click()
    picker = page.get_by_test_id("folder-picker")
    expect(picker).to_be_visible()
    expect(picker.get_by_test_id("folder-picker-path")).not_to_be_empty(timeout=T)
    audit(page, "the folder picker", found)
    page.keyboard.press("Escape")
    expect(picker).to_be_hidden()
    verdict(page, found)


def test_the_narrow_layout_with_each_drawer_open(browser, app, tmp_path: Path):
    context = browser.new_context(viewport={"width": 800, "height": 600})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(app.runtime["uiUrl"])
    page.page_errors = errors  # type: ignore[attr-defined]
    try:
        found: list[str] = []
        ready(page)
        audit(page, "800×600, empty", found)
        page.get_by_test_id("sessions-toggle").click()
        expect(page.locator("aside.sidebar")).to_be_visible()
        page.get_by_test_id("new-session").click()
        expect(page.get_by_test_id("chat-title")).to_be_visible(timeout=T)
        expect(page.get_by_test_id("message-input")).to_be_enabled(timeout=T)
        run_turn(page, "Hello, **narrow** world.")
        audit(page, "800×600, a chat", found)
        page.get_by_test_id("sessions-toggle").click()
        expect(page.locator("aside.sidebar")).to_be_visible()
        audit(page, "800×600, the sessions drawer", found)
        page.get_by_test_id("panel-toggle").click()
        expect(page.get_by_test_id("side-panel")).to_be_visible()
        expect(page.locator("aside.sidebar")).to_be_hidden()
        audit(page, "800×600, the workspace drawer", found)
        verdict(page, found)
    finally:
        context.close()
