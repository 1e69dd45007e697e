"""Server-rendered SVG charts for the dashboard: no JavaScript, no CDN, readable on a phone and on paper.

Each function returns ``Markup`` holding one ``<svg>`` that scales to its container (``viewBox``, width 100 %).
Colours are SVG presentation attributes (allowed by the pages' Content-Security-Policy, unlike inline styles).
Every chart has a ``<title>`` and ``<desc>`` for screen readers, and the page puts a table of the same numbers
beside it. Suppressed numbers (see :mod:`bot.dashboard.suppression`) are drawn as nothing and labelled "<5".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from markupsafe import Markup, escape

from bot.dashboard.suppression import Cell

__all__ = ["STATUS_COLOURS", "hbars", "stacked_columns", "status_split"]

STATUS_COLOURS: Final = {
    "poor": "#b3261e",
    "near_poor": "#e8833a",
    "average_living": "#d9a520",
    "not_poor": "#4f7f4e",
    "": "#9aa5b1",
}
BAR_COLOUR: Final = "#0b5cad"
INK: Final = "#1b1f24"
MUTED: Final = "#4a5562"
FONT: Final = 'font-family="system-ui, sans-serif"'


def _svg(width: int, height: int, title: str, desc: str, body: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'preserveAspectRatio="xMinYMin meet" {FONT}>'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{body}</svg>"
    )


def hbars(title: str, items: Sequence[tuple[str, Cell]], *, colour: str = BAR_COLOUR,
          colours: Mapping[str, str] | None = None, keys: Sequence[str] | None = None) -> Markup:
    """Horizontal bars, one per ``(label, cell)``, longest = full width, number at the bar's end."""
    width, label_w, row_h = 640, 210, 30
    height = max(1, len(items)) * row_h + 8
    top = max((c.plot for _, c in items), default=0) or 1
    parts: list[str] = []
    for i, (label, value) in enumerate(items):
        y = 4 + i * row_h
        fill = (colours or {}).get(keys[i] if keys else label, colour)
        bar_w = int((width - label_w - 80) * value.plot / top)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 19}" text-anchor="end" font-size="15" fill="{INK}">'
            f"{escape(label)}</text>"
        )
        if bar_w > 0:
            parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{bar_w}" height="{row_h - 10}" fill="{fill}" rx="2"/>')
        parts.append(
            f'<text x="{label_w + bar_w + 6}" y="{y + 19}" font-size="15" fill="{INK}">{escape(value.text)}</text>'
        )
    desc = "; ".join(f"{label}: {value.text}" for label, value in items)
    return _svg(width, height, title, desc, "".join(parts))


def stacked_columns(title: str, columns: Sequence[tuple[str, Mapping[str, Cell], Cell]],
                    order: Sequence[str], labels: Mapping[str, str]) -> Markup:
    """Monthly columns stacked by status; the column total is written above each column.

    Args:
        title: Chart title (also read out by screen readers).
        columns: ``(label, {status: cell}, total cell)`` per column, in order.
        order: Statuses bottom to top.
        labels: Vietnamese status names for the legend.
    """
    width, height, left, bottom, top_pad = 640, 300, 44, 56, 24
    plot_h = height - bottom - top_pad
    n = max(1, len(columns))
    step = (width - left - 8) / n
    bar_w = max(6.0, step * 0.7)
    peak = max((t.plot for _, _, t in columns), default=0) or 1
    parts: list[str] = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 4}" y2="{height - bottom}" stroke="{MUTED}"/>'
    ]
    for i, (label, cells, total) in enumerate(columns):
        x = left + i * step + (step - bar_w) / 2
        y = float(height - bottom)
        if not total.suppressed:
            for status in order:
                value = cells.get(status)
                if value is None or value.plot <= 0:
                    continue
                h = plot_h * value.plot / peak
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                    f'fill="{STATUS_COLOURS.get(status, STATUS_COLOURS[""])}"/>'
                )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 5:.1f}" text-anchor="middle" font-size="12" fill="{INK}">'
            f"{escape(total.text)}</text>"
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 17}" text-anchor="middle" font-size="12" '
            f'fill="{MUTED}">{escape(label)}</text>'
        )
    # Legend under the axis.
    x = float(left)
    for status in order:
        parts.append(f'<rect x="{x:.0f}" y="{height - 22}" width="12" height="12" '
                     f'fill="{STATUS_COLOURS.get(status, STATUS_COLOURS[""])}"/>')
        text = labels.get(status, status)
        parts.append(f'<text x="{x + 16:.0f}" y="{height - 12}" font-size="13" fill="{INK}">{escape(text)}</text>')
        x += 26 + 7.5 * len(text)
    desc = "; ".join(f"{label}: {total.text}" for label, _, total in columns)
    return _svg(width, height, title, desc, "".join(parts))


def status_split(title: str, rows: Sequence[tuple[str, Mapping[str, Cell]]], order: Sequence[str],
                 labels: Mapping[str, str]) -> Markup:
    """One 100 % bar per row (standard in force, next standard), split by status, with each share written in."""
    width, label_w, row_h = 640, 170, 46
    height = len(rows) * row_h + 34
    parts: list[str] = []
    for i, (label, cells) in enumerate(rows):
        y = 4 + i * row_h
        parts.append(f'<text x="{label_w - 8}" y="{y + 24}" text-anchor="end" font-size="15" fill="{INK}">'
                     f"{escape(label)}</text>")
        total = sum(c.plot for c in cells.values())
        hidden = any(c.suppressed for c in cells.values())
        x = float(label_w)
        span = width - label_w - 8
        if total <= 0 or hidden:
            parts.append(f'<rect x="{x}" y="{y + 6}" width="{span}" height="{row_h - 14}" fill="#eef1f5"/>')
            note = "không đủ số liệu để hiển thị" if hidden else "chưa có số liệu"
            parts.append(f'<text x="{x + 8}" y="{y + 24}" font-size="13" fill="{MUTED}">{note}</text>')
            continue
        for status in order:
            value = cells.get(status)
            if value is None or value.plot <= 0:
                continue
            w = span * value.plot / total
            parts.append(f'<rect x="{x:.1f}" y="{y + 6}" width="{w:.1f}" height="{row_h - 14}" '
                         f'fill="{STATUS_COLOURS.get(status, STATUS_COLOURS[""])}"/>')
            share = value.plot / total
            if w > 34:
                parts.append(f'<text x="{x + w / 2:.1f}" y="{y + 24}" text-anchor="middle" font-size="13" '
                             f'fill="#ffffff">{share * 100:.0f}%</text>')
            x += w
    x = float(label_w)
    for status in order:
        parts.append(f'<rect x="{x:.0f}" y="{height - 22}" width="12" height="12" '
                     f'fill="{STATUS_COLOURS.get(status, STATUS_COLOURS[""])}"/>')
        text = labels.get(status, status)
        parts.append(f'<text x="{x + 16:.0f}" y="{height - 12}" font-size="13" fill="{INK}">{escape(text)}</text>')
        x += 26 + 7.2 * len(text)
    desc = "; ".join(
        f"{label}: " + ", ".join(f"{labels.get(s, s)} {c.text}" for s, c in cells.items()) for label, cells in rows
    )
    return _svg(width, height, title, desc, "".join(parts))
