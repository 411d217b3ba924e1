"""search_sessions: message text across the stores' chats, bounded, with snippets."""

from __future__ import annotations

import pytest

from dim_actors.router import commands
from dim_actors.router.search import SNIPPET, search_texts, snippet, texts_of
from dim_actors.router.stores import Chat, Turn


def chat(sid: str, *turns: tuple[str, str, str]) -> Chat:
    c = Chat(sid)
    for n, (turn_id, user, answer) in enumerate(turns):
        t = Turn(turn_id, user, n + 1)
        if answer:
            t.append_text(answer, n + 1)
        c.turns.append(t)
    return c


CHATS = [
    chat(
        "s1", ("t1", "Fix the Parser please", "Done: parser fixed."), ("t2", "hi", "")
    ),
    chat(
        "s2", ("t3", "What is a PARSER?", ""), ("t4", "thanks", "A parser reads text.")
    ),
    chat("s3", ("t5", "nothing here", "nor here")),
]


@pytest.mark.parametrize(
    ("query", "limit", "hits"),
    [
        (
            "parser",
            50,
            [
                ("s1", "t1", "user"),
                ("s1", "t1", "assistant"),
                ("s2", "t4", "assistant"),
                ("s2", "t3", "user"),
            ],
        ),
        ("PARSER", 2, [("s1", "t1", "user"), ("s1", "t1", "assistant")]),
        ("nor", 50, [("s3", "t5", "assistant")]),
        ("absent", 50, []),
        ("a.c", 50, []),  # not a pattern: the dot is a dot
    ],
)
def test_search_finds_text_in_any_case_bounded(query, limit, hits):
    out = search_texts(texts_of(CHATS), query, limit)
    got = [(r["sessionId"], r["turnId"], r["where"]) for r in out["results"]]
    assert got == hits
    for r in out["results"]:
        found = r["snippet"][r["matchStart"] : r["matchEnd"]]
        assert found.lower() == query.lower()
    assert out["more"] == (query == "PARSER")


def test_snippet_is_about_120_characters_around_the_match():
    text = ("word " * 100) + "NEEDLE" + (" tail" * 100) + "\nend"
    start = text.index("NEEDLE")
    s = snippet(text, start, start + 6)
    assert s["snippet"].startswith("…") and s["snippet"].endswith("…")
    assert len(s["snippet"]) <= SNIPPET + 2
    assert s["snippet"][s["matchStart"] : s["matchEnd"]] == "NEEDLE"
    short = snippet("a\nNEEDLE\tb", 2, 8)
    assert short == {"snippet": "a NEEDLE b", "matchStart": 2, "matchEnd": 8}


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ({"query": "x"}, None),
        ({"query": "x", "limit": 5}, None),
        ({"query": ""}, "search_sessions: query must not be empty"),
        ({"query": "   "}, "search_sessions: query must not be empty"),
        ({"query": "x" * 201}, "search_sessions: query is longer than 200 characters"),
        ({"query": "x", "limit": 0}, "search_sessions: limit: Expected `int` >= 1"),
        ({}, "search_sessions: Object missing required field `query`"),
    ],
)
def test_search_arguments(args, problem):
    got = commands.validate("search_sessions", args)
    if problem is None:
        assert isinstance(got, commands.SearchSessions)
    else:
        assert got == problem
