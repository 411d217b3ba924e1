"""The conflict view's line diff (ui/js/sync.js, aligned by the vendored jsdiff) as a real headless
Chromium renders it from the page the app serves: a row per case, so what the library answers is
pinned to what the user sees."""

from __future__ import annotations

import pytest
from apphelpers import ROOT, App
from playwright.sync_api import Page, expect

UI_WAIT_MS = 60_000
VENDORED = "vendor/jsdiff/libesm/diff/array.js"

# The lines the diff shows, "-" upstream and "+" local, each as (its classes, its text).
SAME, DEL, ADD = "diff-line", "diff-line del", "diff-line add"

CASES = {
    "insertion": (
        "one\ntwo",
        "one\nnew\ntwo",
        [(SAME, " one"), (ADD, "+new"), (SAME, " two")],
    ),
    "deletion": (
        "one\ngone\ntwo",
        "one\ntwo",
        [(SAME, " one"), (DEL, "-gone"), (SAME, " two")],
    ),
    "change: the removed line before the added one": (
        "line one\nagent line\n",
        "line one\nmy line\n",
        [(SAME, " line one"), (DEL, "-agent line"), (ADD, "+my line"), (SAME, " ")],
    ),
    "a change of several lines": (
        "keep\na1\na2\nkeep too",
        "keep\nb1\nb2\nb3\nkeep too",
        [
            (SAME, " keep"),
            (DEL, "-a1"),
            (DEL, "-a2"),
            (ADD, "+b1"),
            (ADD, "+b2"),
            (ADD, "+b3"),
            (SAME, " keep too"),
        ],
    ),
    "identical": ("a\nb\n", "a\nb\n", [(SAME, " a"), (SAME, " b"), (SAME, " ")]),
    "both empty": ("", "", [(SAME, " ")]),
    "empty upstream": ("", "x\ny", [(DEL, "-"), (ADD, "+x"), (ADD, "+y")]),
    "empty local": ("x\ny", "", [(DEL, "-x"), (DEL, "-y"), (ADD, "+")]),
    "trailing newline removed locally": ("a\n", "a", [(SAME, " a"), (DEL, "-")]),
    "trailing newline added locally": ("a", "a\n", [(SAME, " a"), (ADD, "+")]),
    "CRLF against LF: the line endings differ": (
        "a\r\nb",
        "a\nb",
        [(DEL, "-a\r"), (ADD, "+a"), (SAME, " b")],
    ),
    "repeated lines: the earliest match is kept": (
        "c\na\nc",
        "b\nc",
        [(ADD, "+b"), (SAME, " c"), (DEL, "-a"), (DEL, "-c")],
    ),
}

RENDER = """async ([upstream, local, extra]) => {
  const { renderDiff } = await import("/js/sync.js");
  const pre = renderDiff({ path: "notes.md", upstreamIteration: 3, upstream, local, ...extra });
  const host = document.createElement("div");
  host.append(pre);
  document.body.append(host);
  try {
    return [...pre.children].map((el) => [el.className, el.textContent]);
  } finally {
    host.remove();
  }
}"""


@pytest.fixture(scope="module")
def diff_page(browser, tmp_path_factory):
    """The app's page, loaded once for the module: the cases only render, they change nothing."""
    home = tmp_path_factory.mktemp("dim-home")
    app = App(home)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(app.runtime["uiUrl"])
    expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=UI_WAIT_MS)
    yield page
    context.close()
    app.stop()


def rendered(
    page: Page, upstream: str, local: str, **extra: object
) -> list[tuple[str, str]]:
    rows = page.evaluate(RENDER, [upstream, local, extra])
    return [(cls, text) for cls, text in rows]


@pytest.mark.parametrize(("upstream", "local", "lines"), CASES.values(), ids=CASES)
def test_the_diff_shows_each_line_with_its_marker_and_class(
    diff_page: Page, upstream: str, local: str, lines: list[tuple[str, str]]
):
    head = [("diff-head", "--- upstream #3"), ("diff-head", "+++ local")]
    assert rendered(diff_page, upstream, local) == head + lines
    assert diff_page.page_errors() == []


def test_a_side_deleted_is_diffed_as_empty_and_named_in_its_head(diff_page: Page):
    assert rendered(diff_page, "x", "ignored", localDeleted=True) == [
        ("diff-head", "--- upstream #3"),
        ("diff-head", "+++ local (deleted)"),
        (DEL, "-x"),
        (ADD, "+"),
    ]
    assert rendered(diff_page, "ignored", "y", upstreamDeleted=True) == [
        ("diff-head", "--- upstream #3 (deleted)"),
        ("diff-head", "+++ local"),
        (DEL, "-"),
        (ADD, "+y"),
    ]


def test_long_texts_that_differ_are_shown_whole_one_after_the_other(diff_page: Page):
    upstream = "\n".join(f"u{i}" for i in range(2001))
    local = "\n".join(f"l{i}" for i in range(2001))
    lines = rendered(diff_page, upstream, local)[2:]
    assert lines[:2] == [(DEL, "-u0"), (DEL, "-u1")]
    assert lines[2000:2002] == [(DEL, "-u2000"), (ADD, "+l0")]
    assert len(lines) == 4002


def test_the_bridge_serves_the_vendored_module_as_javascript(diff_page: Page):
    """A module script in another MIME type is refused by the browser: the page would not load."""
    got = diff_page.evaluate(
        """async (path) => {
          const r = await fetch(path);
          return [r.status, r.headers.get("content-type"), await r.text()];
        }""",
        "/" + VENDORED,
    )
    status, content_type, text = got
    assert status == 200
    assert content_type.split(";")[0] in {"text/javascript", "application/javascript"}
    assert text == (ROOT / "ui" / VENDORED).read_text()
