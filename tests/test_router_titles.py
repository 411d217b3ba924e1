"""The automatic session title: the first line of the first message, as plain words."""

from __future__ import annotations

import pytest

from dim_actors.router.titles import TITLE_MAX, is_default_name, title_from_message

CASES = [
    ("Fix the parser", "Fix the parser"),
    ("  Fix the parser  \nsecond line", "Fix the parser"),
    ("\n\n   \nHello there", "Hello there"),
    ("# Heading title", "Heading title"),
    ("> quoted **bold** text", "quoted bold text"),
    ("- [x] task done", "task done"),
    ("1. first step", "first step"),
    ("Use `ruff` and *mypy* on _this_", "Use ruff and mypy on this"),
    ("See [the docs](https://example.com/x) now", "See the docs now"),
    ("![diagram](a.png) explained", "diagram explained"),
    ("```python\nprint(1)\n```", "print(1)"),
    ("snake_case_name stays", "snake_case_name stays"),
    ("2 * 3 * 4 is 24", "2 * 3 * 4 is 24"),
    (
        "Please refactor the session list so that it orders by last activity and more",
        "Please refactor the session list so that it…",
    ),
    ("x" * 80, "x" * (TITLE_MAX - 1) + "…"),
    ("   ", None),
    ("```\n```", None),
    ("**", None),
    ("", None),
]


@pytest.mark.parametrize(("message", "title"), CASES)
def test_title_from_first_message(message, title):
    got = title_from_message(message)
    assert got == title
    if got is not None:
        assert len(got) <= TITLE_MAX


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("New session", True),
        ("new session", True),
        ("", True),
        ("  ", True),
        (None, True),
        ("Untitled session", True),
        ("Fix the parser", False),
        ("New session about X", False),
    ],
)
def test_default_names(name, default):
    assert is_default_name(name) is default
