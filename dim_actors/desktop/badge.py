"""The attention count (router/attention.py) as the desktop shows it: a badge on the
tray icon, and a prefix on the window titles."""

from __future__ import annotations

import re
from typing import Any

BADGE_RED = (214, 40, 40)
WHITE = (255, 255, 255)
# Drawn this many times larger and scaled down: crisp edges at the 22 px of a panel.
_SUPERSAMPLE = 4
_DIAMETER = 0.56  # of the icon's side, in its top right corner, clear of the state dot
_PREFIX = re.compile(r"^\(\d+\+?\) ")


def badge_text(count: int) -> str:
    """What the badge says: nothing for 0, "9+" past 9 (a third digit would not be
    readable at 22 px)."""
    if count <= 0:
        return ""
    return str(count) if count <= 9 else "9+"


def with_count(title: str, count: int) -> str:
    """`title` with the count in front, "(2) Diminuendo", or without one for 0. A count
    already in front (the page's own) is replaced, not added to."""
    base = _PREFIX.sub("", title, count=1)
    return f"({count}) {base}" if count > 0 else base


# A bold face where the system has one (Pillow looks in the usual font folders);
# Pillow's own face, thickened, elsewhere.
_BOLD_FACES = ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf")


def _font(size: int) -> tuple[Any, bool]:
    """A font of `size` px, and whether it is bold."""
    from PIL import ImageFont

    for face in _BOLD_FACES:
        try:
            return ImageFont.truetype(face, size), True
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size), False
    except (TypeError, ImportError, OSError):  # an old Pillow, or no FreeType
        return ImageFont.load_default(), False


def draw_badge(image: Any, count: int) -> Any:
    """`image` (square RGBA) with the badge for `count` over its top right corner; the
    image itself when the count is 0."""
    from PIL import Image, ImageDraw

    text = badge_text(count)
    if not text:
        return image
    side = image.width * _SUPERSAMPLE
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    diameter = round(side * _DIAMETER)
    left = side - diameter
    ring = max(1, side // 40)
    d.ellipse(
        [left, 0, side - 1, diameter - 1],
        fill=(*BADGE_RED, 255),
        outline=(*WHITE, 255),
        width=ring,
    )
    # The largest text that fits well inside the disc.
    inner = diameter - 2 * ring
    size = round(inner * 0.9)
    while True:
        font, bold = _font(size)
        # a regular face thickened: its thin strokes would vanish when scaled down
        stroke = 0 if bold else max(1, size // 20)
        x0, y0, x1, y1 = d.textbbox((0, 0), text, font=font, stroke_width=stroke)
        if size <= 6 or (x1 - x0 <= inner * 0.8 and y1 - y0 <= inner * 0.62):
            break
        size -= max(1, size // 16)
    centre = (left + diameter / 2, diameter / 2)
    d.text(
        centre,
        text,
        font=font,
        fill=(*WHITE, 255),
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=(*WHITE, 255),
    )
    small = layer.resize(image.size, Image.Resampling.LANCZOS)
    out = image.convert("RGBA")
    out.alpha_composite(small)
    return out
