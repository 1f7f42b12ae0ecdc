"""The policies phase as a chart: standalone SVG text, like eval's charts.

X is the number of distinct policies (log scale); three curves share a 0..1 scale: items/s
as a share of the fewest-policies run, the prefix-cache hit ratio, and prefill tokens
computed per item as a share of the largest.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from .stats import saturated_rate

WIDTH, HEIGHT = 480, 340
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 36, 64
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
INK, GRID = "#1f2933", "#d9dee3"
SERIES = (("items/s ÷ fewest", "#1769aa"), ("prefix-cache hit ratio", "#2f855a"))
SERIES += (("prefill tokens/item ÷ most", "#c2410c"),)


def curves(runs: dict[str, dict[str, Any]]) -> list[tuple[int, float, float, float]]:
    """(policies, rate share, hit ratio, prefill share) per run with figures."""
    rows = [(int(n), run) for n, run in runs.items() if "error" not in run and "prefill" in run]
    if not rows:
        return []
    first = saturated_rate(rows[0][1]) or 1.0
    most = max(run["prefill"]["computed_tokens_per_prompt"] for _, run in rows) or 1.0
    return [
        (
            n,
            saturated_rate(run) / first,
            run["prefill"]["hit_ratio"],
            run["prefill"]["computed_tokens_per_prompt"] / most,
        )
        for n, run in rows
    ]


def policies_svg(runs: dict[str, dict[str, Any]]) -> str:
    points = curves(runs)
    top = max([1.0, *(max(p[1:]) for p in points)])
    counts = [p[0] for p in points] or [1, 10]
    low, high = math.log10(min(counts)), math.log10(max(counts))
    span = (high - low) or 1.0

    def x(n: int) -> float:
        return round(LEFT + (math.log10(n) - low) / span * PLOT_W, 2)

    def y(v: float) -> float:
        return round(TOP + (1 - v / top) * PLOT_H, 2)

    title = "distinct policies, Zipf traffic"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="13" fill="{INK}">'
        f"{escape(title)}</text>",
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = tick * top
        parts.append(
            f'<line x1="{LEFT}" y1="{y(v)}" x2="{LEFT + PLOT_W}" y2="{y(v)}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(v) + 4}" text-anchor="end" fill="{INK}">{v:.2f}</text>'
        )
    for n in counts:
        parts.append(
            f'<text x="{x(n)}" y="{TOP + PLOT_H + 16}" text-anchor="middle" '
            f'fill="{INK}">{n:,}</text>'
        )
    for index, (label, colour) in enumerate(SERIES):
        path = " ".join(f"{x(p[0])},{y(p[index + 1])}" for p in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in points:
            parts.append(f'<circle cx="{x(p[0])}" cy="{y(p[index + 1])}" r="3" fill="{colour}"/>')
        legend_y = HEIGHT - 30 + 12 * (index % 2)
        legend_x = LEFT + (index // 2) * 220
        parts.append(
            f'<text x="{legend_x}" y="{legend_y}" fill="{colour}">— {escape(label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
