"""A small hand-written SVG writer: shapes and text as strings, escaped, in a deterministic order.

No plotting library: the charts of :mod:`bench.chart` are built from these few elements. Numbers
are written with at most two decimals, so the same input always gives the same bytes.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape, quoteattr

FONT = "DejaVu Sans, Verdana, Helvetica, Arial, sans-serif"
INK, GRID, AXIS = "#222222", "#dddddd", "#555555"
CHAR_WIDTH = 0.6  # a character's width as a fraction of the font size: an estimate for layout


def num(value: float) -> str:
    """A coordinate: at most two decimals, no trailing zeros, never ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def text_width(text: str, size: float) -> float:
    """About how wide text is in pixels at a font size (for layout, not exact)."""
    return len(text) * size * CHAR_WIDTH


def nice_ticks(top: float, most: int = 6) -> list[float]:
    """Ticks 0, step, 2*step ... to the first at or above top, at most ``most`` steps.

    The step is the smallest of 1, 2, 2.5 or 5 x 10^k that needs no more than ``most`` steps.
    """
    if not top > 0 or math.isinf(top):
        return [0.0, 1.0]
    power = 10.0 ** math.floor(math.log10(top / most))
    step = next(
        m * power for m in (1, 2, 2.5, 5, 10) if math.ceil(top / (m * power) - 1e-9) <= most
    )
    n = math.ceil(top / step - 1e-9)
    return [round(i * step, 10) for i in range(n + 1)]


def tick_label(value: float, ticks: list[float]) -> str:
    """A tick's label with as many decimals as the step between ticks needs."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = next(d for d in range(6) if abs(round(step, d) - step) < 1e-9 * step or d == 5)
    return f"{value:,.{decimals}f}"


class Svg:
    """An SVG document built element by element; :meth:`render` returns its text."""

    def __init__(self, width: float, height: float, title: str) -> None:
        self.width, self.height, self.title = width, height, title
        self.parts: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, fill: str, **attrs: str) -> None:
        """A filled rectangle."""
        self.parts.append(
            f'<rect x="{num(x)}" y="{num(y)}" width="{num(w)}" height="{num(h)}" '
            f"fill={quoteattr(fill)}{_attrs(attrs)}/>"
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str, **attrs: str) -> None:
        """A straight line."""
        self.parts.append(
            f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" '
            f"stroke={quoteattr(stroke)}{_attrs(attrs)}/>"
        )

    def polyline(self, points: list[tuple[float, float]], stroke: str, **attrs: str) -> None:
        """An open line through points."""
        coords = " ".join(f"{num(x)},{num(y)}" for x, y in points)
        self.parts.append(
            f'<polyline points="{coords}" fill="none" stroke={quoteattr(stroke)}{_attrs(attrs)}/>'
        )

    def circle(self, x: float, y: float, r: float, fill: str, **attrs: str) -> None:
        """A filled circle (a marker)."""
        self.parts.append(
            f'<circle cx="{num(x)}" cy="{num(y)}" r="{num(r)}" fill={quoteattr(fill)}'
            f"{_attrs(attrs)}/>"
        )

    def text(
        self,
        x: float,
        y: float,
        content: str,
        size: float = 12,
        anchor: str = "start",
        **attrs: str,
    ) -> None:
        """Text whose baseline starts (or is centred, or ends: anchor) at x, y."""
        self.parts.append(
            f'<text x="{num(x)}" y="{num(y)}" font-size="{num(size)}" '
            f"text-anchor={quoteattr(anchor)}{_attrs(attrs)}>{escape(content)}</text>"
        )

    def render(self) -> str:
        """The whole document: a white background (readable in light and dark page themes)."""
        w, h = num(self.width), num(self.height)
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" font-family={quoteattr(FONT)} '
            f"fill={quoteattr(INK)}>"
        )
        return "\n".join(
            [
                head,
                f"<title>{escape(self.title)}</title>",
                f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>',
                *self.parts,
                "</svg>",
                "",
            ]
        )


def _attrs(attrs: dict[str, str]) -> str:
    """Extra attributes, in order (``stroke_width`` is ``stroke-width``, ``cls`` is ``class``)."""
    return "".join(
        f" {'class' if k == 'cls' else k.replace('_', '-')}={quoteattr(v)}"
        for k, v in attrs.items()
    )
