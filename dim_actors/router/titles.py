"""A session's title from its first message: what the router names a session that still
has the gateway's default name when its first turn is sent (docs/contracts.md §3)."""

from __future__ import annotations

import re

TITLE_MAX = 50
# What a gateway calls a session nobody named (the dev gateway: "New session").
DEFAULT_NAMES = frozenset({"", "new session", "untitled", "untitled session"})

_FENCE = re.compile(r"^\s*(```|~~~)")
# Block markers at the start of a line: headings, quotes, list bullets and numbers, task
# boxes.
_BLOCK = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+]\s+|\d+[.)]\s+)*(?:\[[ xX]\]\s+)?")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|~~|`+)")
_SINGLE = re.compile(r"(?<![\w*])[*_](?=\S)(.+?)(?<=\S)[*_](?![\w*])")
_SPACE = re.compile(r"\s+")


def is_default_name(name: object) -> bool:
    """True for a name the gateway gave, not a person (or this module)."""
    return not isinstance(name, str) or name.strip().lower() in DEFAULT_NAMES


def clean_line(line: str) -> str:
    """One line of markdown as plain words."""
    line = _BLOCK.sub("", line)
    line = _IMAGE.sub(r"\1", line)
    line = _LINK.sub(r"\1", line)
    line = _EMPHASIS.sub("", line)
    line = _SINGLE.sub(r"\1", line)
    return _SPACE.sub(" ", line).strip()


def title_from_message(text: object, limit: int = TITLE_MAX) -> str | None:
    """The first line with words in it, as plain text, cut at a word boundary to at most
    `limit` characters (an ellipsis marks a cut). None when the message has no words
    (only whitespace, markup or a code fence)."""
    if not isinstance(text, str):
        return None
    for raw in text.splitlines():
        if _FENCE.match(raw):
            continue
        line = clean_line(raw)
        if not line:
            continue
        if len(line) <= limit:
            return line
        cut = line[: limit - 1]
        space = cut.rfind(" ")
        # a word longer than half the title is cut inside it rather than dropped
        if space >= limit // 2:
            cut = cut[:space]
        return cut.rstrip(" ,.;:-") + "…"
    return None
