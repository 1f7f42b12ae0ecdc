"""Charts as standalone SVG text: a precision-recall curve and a reliability diagram.

Hand-written SVG keeps the report free of plotting libraries and renders in any browser,
in GitHub's Markdown view and inline in the HTML report.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from .metrics import PrPoint, ReliabilityBin

WIDTH, HEIGHT = 420, 340
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 36, 48
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
INK, GRID, ACCENT, SOFT, MARK = "#1f2933", "#d9dee3", "#1769aa", "#9cc3e4", "#c2410c"


def _x(value: float) -> float:
    return round(LEFT + value * PLOT_W, 2)


def _y(value: float) -> float:
    return round(TOP + (1 - value) * PLOT_H, 2)


def _frame(title: str, x_label: str, y_label: str) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="13" fill="{INK}">'
        f"{escape(title)}</text>",
    ]
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(
            f'<line x1="{_x(0)}" y1="{_y(tick)}" x2="{_x(1)}" y2="{_y(tick)}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<line x1="{_x(tick)}" y1="{_y(0)}" x2="{_x(tick)}" y2="{_y(1)}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{_x(0) - 6}" y="{_y(tick) + 4}" text-anchor="end" fill="{INK}">'
            f"{tick:.1f}</text>"
        )
        parts.append(
            f'<text x="{_x(tick)}" y="{_y(0) + 16}" text-anchor="middle" fill="{INK}">'
            f"{tick:.1f}</text>"
        )
    parts.append(
        f'<rect x="{_x(0)}" y="{_y(1)}" width="{PLOT_W}" height="{PLOT_H}" fill="none" '
        f'stroke="{INK}"/>'
    )
    parts.append(
        f'<text x="{_x(0.5)}" y="{HEIGHT - 10}" text-anchor="middle" fill="{INK}">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text x="14" y="{_y(0.5)}" text-anchor="middle" fill="{INK}" '
        f'transform="rotate(-90 14 {_y(0.5)})">{escape(y_label)}</text>'
    )
    return parts


def pr_curve_svg(
    title: str, curve: Sequence[PrPoint], current: tuple[float, float] | None = None
) -> str:
    """``current``: (recall, precision) at the configured threshold, marked with a ring."""
    parts = _frame(title, "recall", "precision")
    if curve:
        # A step curve: precision holds until recall reaches the next point.
        path = [f"M{_x(0)},{_y(curve[0].precision)}"]
        for point in curve:
            path.append(f"H{_x(point.recall)}V{_y(point.precision)}")
        parts.append(f'<path d="{"".join(path)}" fill="none" stroke="{ACCENT}" stroke-width="2"/>')
        for point in curve:
            parts.append(
                f'<circle cx="{_x(point.recall)}" cy="{_y(point.precision)}" r="2.5" '
                f'fill="{ACCENT}"><title>threshold {point.threshold:.4g}: precision '
                f"{point.precision:.3f}, recall {point.recall:.3f}</title></circle>"
            )
    else:
        parts.append(_note("no positive items: no curve"))
    if current is not None:
        x, y = _x(current[0]), _y(current[1])
        parts.append(
            f'<circle cx="{x}" cy="{y}" r="6" fill="none" stroke="{MARK}" stroke-width="2">'
            "<title>configured threshold</title></circle>"
        )
        anchor = "end" if current[0] > 0.5 else "start"
        shift = -9 if anchor == "end" else 9
        parts.append(
            f'<text x="{x + shift}" y="{y + 16}" text-anchor="{anchor}" fill="{MARK}">'
            "configured threshold</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def reliability_svg(title: str, bins: Sequence[ReliabilityBin]) -> str:
    parts = _frame(title, 'predicted P("1")', "observed share of positives")
    for b in bins:
        if not b.count or b.positive_rate is None or b.mean_score is None:
            continue
        top = _y(b.positive_rate)
        parts.append(
            f'<rect x="{_x(b.low) + 1}" y="{top}" width="{_x(b.high) - _x(b.low) - 2}" '
            f'height="{round(_y(0) - top, 2)}" fill="{SOFT}"><title>scores {b.low:.1f}-'
            f"{b.high:.1f}: {b.count} items, {b.positive_rate:.3f} positive</title></rect>"
        )
        parts.append(f'<circle cx="{_x(b.mean_score)}" cy="{top}" r="3" fill="{ACCENT}"/>')
        parts.append(
            f'<text x="{_x((b.low + b.high) / 2)}" y="{top - 4}" text-anchor="middle" '
            f'font-size="9" fill="{INK}">n={b.count}</text>'
        )
    # The diagonal is perfect calibration; drawn last so the bars do not hide it.
    parts.append(
        f'<line x1="{_x(0)}" y1="{_y(0)}" x2="{_x(1)}" y2="{_y(1)}" stroke="{INK}" '
        'stroke-dasharray="4 3"/>'
    )
    if not any(b.count for b in bins):
        parts.append(_note("no items"))
    parts.append("</svg>")
    return "\n".join(parts)


def _note(text: str) -> str:
    return (
        f'<text x="{_x(0.5)}" y="{_y(0.5)}" text-anchor="middle" fill="{INK}">{escape(text)}</text>'
    )
