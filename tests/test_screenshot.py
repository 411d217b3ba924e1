"""The README's screenshots of the main window, taken here so they stay current:
docs/screenshot.png (1280×800, light), docs/screenshot-dark.png (the same, dark) and
docs/screenshot-narrow.png (800×600: the session list and the side panel folded away)."""

from __future__ import annotations

from apphelpers import ROOT, App
from playwright.sync_api import expect

SHOT = ROOT / "docs" / "screenshot.png"
SHOTS = [
    (SHOT, {"width": 1280, "height": 800}, "light"),
    (ROOT / "docs" / "screenshot-dark.png", {"width": 1280, "height": 800}, "dark"),
    (ROOT / "docs" / "screenshot-narrow.png", {"width": 800, "height": 600}, "light"),
]
# Resolves once the page has rendered two more frames: anything scheduled before it has
# been drawn.
NEXT_FRAMES = (
    "() => new Promise(r => requestAnimationFrame(() => "
    "requestAnimationFrame(() => r(true))))"
)

SCRIPT = "\n".join(
    [
        "/think The test only fails when the input has no trailing newline, so the "
        "tokenizer probably reads one character past the end. Reading next_token() first.",
        '/tool read_file {"path": "src/parser.py"}',
        "/write src/parser.py def next_token(text, i):\\n"
        "    if i + 1 < len(text) and text[i + 1] == '=':\\n"
        "        return text[i:i + 2]\\n",
        "/write tests/test_parser.py def test_no_trailing_newline():\\n"
        "    assert parse('a = 1') == [('a', '=', 1)]\\n",
        "Found it: **`next_token()`** peeks at `text[i + 1]` without checking the length, "
        "so the last token of an input without a trailing newline raised `IndexError`.",
        "",
        "- `src/parser.py`: check `i + 1 < len(text)` before peeking",
        "- `tests/test_parser.py`: a regression test for input without a newline",
    ]
)


def test_screenshots_of_the_main_window(browser, app: App):
    sid = app.invoke(
        "create_session", agentType="coding-agent", name="Fix the flaky parser test"
    )["session"]["id"]
    app.invoke("create_session", agentType="echo", name="Release notes 0.2")
    app.invoke("join_session", sessionId=sid)
    ran = False
    for path, viewport, scheme in SHOTS:
        context = browser.new_context(viewport=viewport, color_scheme=scheme)
        context.grant_permissions(["notifications"], origin=app.base)
        page = context.new_page()
        try:
            page.goto(app.runtime["uiUrl"])
            expect(page.locator("body[data-ready='1']")).to_have_count(1)
            expect(page.get_by_test_id("connection-state")).to_have_text("Connected")
            page.evaluate(f"window.__dim.selectSession({sid!r})")
            if not ran:
                app.invoke("run_turn", sessionId=sid, text=SCRIPT)
                ran = True
            shoot(page, path)
        finally:
            context.close()
        assert path.stat().st_size > 20_000


def shoot(page, path) -> None:
    turn = page.get_by_test_id("turn").last
    expect(turn).to_have_attribute("data-status", "complete")
    expect(turn.get_by_test_id("thinking")).to_have_count(1)
    expect(turn.get_by_test_id("tool-card")).to_have_count(1)
    expect(turn.get_by_test_id("assistant-text").last).to_contain_text(
        "regression test"
    )
    if page.viewport_size["width"] >= 1000:
        expect(page.get_by_test_id("file-item")).to_have_count(2)
    page.get_by_test_id("message-input").fill(
        "Great, apply the fix and run the tests again"
    )
    page.evaluate("document.activeElement && document.activeElement.blur()")
    # Settled, rather than a pause and a hope: whatever render was scheduled has run,
    # the fonts are in, and no finite animation or transition (a toast sliding in, a
    # fade) is under way.
    page.evaluate(NEXT_FRAMES)
    page.wait_for_function("""() => document.fonts.status === "loaded"
      && document.getAnimations().every(a =>
        a.effect.getComputedTiming().iterations === Infinity
        || a.playState !== "running")""")
    # Thinking, the tool card and the answer in view (the script the dev agent ran
    # scrolls away).
    page.evaluate("""() => {
      const last = "[data-testid='turn']:last-of-type";
      const t = document.querySelector(`${last} [data-testid='thinking']`);
      if (t) t.open = true;
      const chat = document.querySelector("[data-testid='chat']");
      chat.scrollTop = chat.scrollHeight;
    }""")
    page.evaluate(NEXT_FRAMES)  # laid out and painted as it now is
    page.wait_for_function("""() => {
      const last = "[data-testid='turn']:last-of-type";
      const t = document.querySelector(`${last} [data-testid='thinking']`);
      const chat = document.querySelector("[data-testid='chat']");
      return t && t.open && chat.scrollHeight - chat.scrollTop - chat.clientHeight <= 1;
    }""")
    path.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(path))
