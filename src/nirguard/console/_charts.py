"""Pictures drawn on the server: bars and lines as SVG geometry, no script.

The functions here compute shapes (numbers only); the templates draw them with SVG
presentation attributes (no ``style``), which the console's Content-Security-Policy allows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

__all__ = ["Chart", "day_label", "timeline"]

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 30


@dataclass
class Chart:
    """Shapes of one chart, in SVG user units."""

    width: int = WIDTH
    height: int = HEIGHT
    bars: list[dict[str, object]] = field(default_factory=list)
    lines: list[dict[str, object]] = field(default_factory=list)
    ticks: list[dict[str, object]] = field(default_factory=list)
    labels: list[dict[str, object]] = field(default_factory=list)
    title: str = ""


def day_label(day: int) -> str:
    """``2026-03-14`` for a POSIX day number."""
    return datetime.fromtimestamp(day * 86400, tz=timezone.utc).strftime("%Y-%m-%d")


def _scale(top: float) -> tuple[float, list[float]]:
    """A round upper bound for the y axis and its ticks."""
    if top <= 0:
        return 1.0, [0.0, 1.0]
    step = 10 ** math.floor(math.log10(top))
    for mult in (1, 2, 5, 10):
        if top <= step * mult * 4:
            step *= mult
            break
    upper = step * math.ceil(top / step)
    return upper, [step * i for i in range(int(upper / step) + 1)]


def _day_bars(
    day: int,
    x0: float,
    slot: float,
    width: float,
    series: Sequence[tuple[str, Mapping[int, float], str]],
    y: Callable[[float], float],
    floor: float,
    mark_from: int | None,
) -> list[dict[str, object]]:
    bars: list[dict[str, object]] = []
    if mark_from is not None and day >= mark_from:
        bars.append(
            {"x": round(x0, 1), "y": TOP, "w": round(slot, 1), "h": round(floor - TOP, 1),
             "fill": "#fdecea", "title": f"{day_label(day)}: incident"}
        )  # fmt: skip
    for number, (name, data, colour) in enumerate(series):
        value = float(data.get(day, 0))
        if value > 0:
            bars.append(
                {"x": round(x0 + slot * 0.1 + number * width, 1), "y": y(value),
                 "w": round(width, 1), "h": round(floor - y(value), 1), "fill": colour,
                 "title": f"{day_label(day)}: {value:g} {name}"}
            )  # fmt: skip
    return bars


def timeline(
    days: Sequence[int],
    series: Sequence[tuple[str, Mapping[int, float], str]],
    *,
    baseline: float | None = None,
    baseline_label: str = "baseline",
    title: str = "",
    mark_from: int | None = None,
    height: int = HEIGHT,
) -> Chart:
    """Bars per day for each series (side by side), a dashed baseline, day ticks.

    Args:
        days: the POSIX day numbers to draw, in order.
        series: ``(name, {day: value}, colour)``; the first is the main one.
        baseline: the account's normal, drawn across the chart.
        mark_from: shade the days from this one on (the incident).
        height: of the whole picture, in SVG units.
    """
    chart = Chart(title=title, height=height)
    values = [v for _, data, _ in series for v in data.values()]
    upper, ticks = _scale(max([*values, baseline or 0.0, 1.0]))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = height - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    width = max(slot * 0.8 / max(len(series), 1), 1.0)

    def y(value: float) -> float:
        return round(TOP + plot_h - plot_h * value / upper, 1)

    for tick in ticks:
        chart.ticks.append({"y": y(tick), "x1": LEFT, "x2": WIDTH - RIGHT, "label": f"{tick:g}"})
    for index, day in enumerate(days):
        x0 = LEFT + index * slot
        chart.bars.extend(_day_bars(day, x0, slot, width, series, y, TOP + plot_h, mark_from))
        if index % max(len(days) // 7, 1) == 0:
            label = {"x": round(x0 + slot / 2, 1), "y": height - 10, "text": day_label(day)[5:]}
            chart.labels.append(label)
    if baseline is not None:
        chart.lines.append(
            {
                "x1": LEFT,
                "x2": WIDTH - RIGHT,
                "y": y(baseline),
                "label": f"{baseline_label} {baseline:.1f}",
            }
        )
    return chart
