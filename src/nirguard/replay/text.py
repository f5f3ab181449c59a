"""Text helpers of the replay's report: durations, shares, aligned tables."""

from __future__ import annotations

__all__ = ["duration", "grid", "hours", "pct", "plural"]


def duration(seconds: float | None) -> str:
    """Seconds as ``36 s``, ``75 min``, ``6.2 h`` or ``1.5 d`` (``-``: none)."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def pct(part: float, whole: float) -> str:
    """``part`` as a percentage of ``whole`` (``-``: nothing to divide)."""
    if not whole:
        return "-"
    share = 100.0 * part / whole
    return f"{share:.3f}%" if share < 10 else f"{share:.1f}%"


def grid(rows: list[tuple[str, ...]], left: int = 1) -> list[str]:
    """An aligned table: the first row a header, the first ``left`` columns flush left."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def plural(n: int, word: str) -> str:
    """``1 week``, ``3 weeks``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def hours(value: float | None) -> str:
    """Hours as a duration (``-``: none, ``never``: infinity)."""
    if value is None:
        return "-"
    if value == float("inf"):
        return "never"
    return duration(value * 3600.0)
