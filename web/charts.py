"""Bar charts as SVG, drawn in pure Python (no JavaScript, no system binaries).

One horizontal bar per row, the count written at its end. A chart is a picture of a table that the
page also shows: it is ``role="img"`` with a title and a description that says every value, so a
screen reader hears the same figures. A suppressed count (published statistics) has no bar: its
length would tell what the words hide.

No inline styles (the CSP forbids them): presentation attributes and classes styled in app.css.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

LABEL_W = 300
BAR_W = 360
VALUE_W = 110
ROW_H = 30
BAR_H = 20
TOP = 8
BAR_FILL = "#1d70b8"
TEXT = "#0b0c0c"
AXIS = "#b1b4b6"


def bar_chart(chart_id: str, title: str, rows: Sequence[tuple[str, int | None, str]]) -> str:
    """``rows``: (label, the count to draw — None when it is suppressed —, the count as words)."""
    top = max((n for _, n, _ in rows if n is not None), default=0)
    height = TOP * 2 + ROW_H * len(rows)
    width = LABEL_W + BAR_W + VALUE_W
    described = "; ".join(f"{label}: {shown}" for label, _, shown in rows)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="app-chart" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc">',
           f'<title id="{chart_id}-title">{escape(title)}</title>',
           f'<desc id="{chart_id}-desc">{escape(described)}</desc>',
           f'<line x1="{LABEL_W}" y1="{TOP}" x2="{LABEL_W}" y2="{height - TOP}" stroke="{AXIS}" stroke-width="1"/>']
    for i, (label, n, shown) in enumerate(rows):
        y = TOP + i * ROW_H
        middle = y + ROW_H // 2 + 5
        out.append(f'<text x="{LABEL_W - 8}" y="{middle}" text-anchor="end" fill="{TEXT}" '
                   f'class="app-chart__label">{escape(label)}</text>')
        length = 0 if not n or not top else max(2, round(BAR_W * n / top))
        if length:
            out.append(f'<rect x="{LABEL_W}" y="{y + (ROW_H - BAR_H) // 2}" width="{length}" height="{BAR_H}" '
                       f'fill="{BAR_FILL}"><title>{escape(f"{label}: {shown}")}</title></rect>')
        out.append(f'<text x="{LABEL_W + length + 6}" y="{middle}" fill="{TEXT}" '
                   f'class="app-chart__value">{escape(shown)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def chart_id(key: str) -> str:
    """An id for the chart of table ``key``: letters, digits and hyphens only (safe in an attribute)."""
    return "chart-" + "".join(c if c.isalnum() else "-" for c in key)
