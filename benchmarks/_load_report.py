"""``bench_load.py``'s numbers: a :class:`Cell` per wrk run, the line printed as it ends,
the table of a run (means over the runs of a cell, ratios to the bare portal and to
slowapi), the after / before comparison of two runs, and the ``--json`` file both ways.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _load_wrk import VARIANTS

__all__ = [
    "Cell",
    "classes",
    "compare",
    "cpu_ratio",
    "dump_cells",
    "load_cells",
    "ok_per_second",
    "progress",
    "sum_dicts",
    "table",
]


@dataclass
class Cell:
    """One wrk run against one portal at one concurrency."""

    variant: str
    workers: int
    conns: int
    run: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    redis_us_per_req: float | None
    app_us_per_req: float | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """All answers per second, 503s and other errors included."""
        return self.requests / self.seconds if self.seconds else 0.0


def classes(statuses: dict[str, int]) -> dict[str, int]:
    """Answers by class: 2xx, 404 (a miss), refused (403/429), 503, other."""
    out = {"2xx": 0, "404": 0, "refused": 0, "503": 0, "other": 0}
    for code, n in statuses.items():
        c = int(code)
        if 200 <= c < 300:
            out["2xx"] += n
        elif c == 404:
            out["404"] += n
        elif c in (403, 429):
            out["refused"] += n
        elif c == 503:
            out["503"] += n
        else:
            out["other"] += n
    return out


def progress(cell: Cell) -> str:
    """The line printed as a cell's wrk run ends."""
    cls = classes(cell.statuses)
    return (
        f"   run {cell.run} w={cell.workers} {cell.variant:<16} c={cell.conns:<5} "
        f"{cell.rps:8.0f} req/s  p50 {cell.p50_ms:7.1f} ms  p99 {cell.p99_ms:7.1f} ms  {cls}"
        + (f"  sock {cell.socket_errors}" if cell.socket_errors else "")
    )


def ok_per_second(cell: Cell) -> float:
    """Correct answers per second: 2xx, 404 (a miss) and 403/429 (a refusal); a 503, another
    error or no answer is not one (a portal that fails fast can serve many req/s of 503)."""
    cls = classes(cell.statuses)
    return (cls["2xx"] + cls["404"] + cls["refused"]) / cell.seconds if cell.seconds else 0.0


def table(cells: list[Cell], repeat: int) -> str:
    """The run's table: per worker count, per concurrency, a line per portal."""
    lines = []
    keyed: dict[tuple[int, int, str], list[Cell]] = {}
    for cell in cells:
        keyed.setdefault((cell.workers, cell.conns, cell.variant), []).append(cell)
    header = (
        f"{'portal':<16}{'conns':>6}{'ok/s':>7}{'runs':>13}{'x bare':>7}{'x slowapi':>10}"
        f"{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'2xx':>7}{'404':>6}{'403/429':>8}{'503':>7}"
        f"{'other':>6}{'sock err':>9}{'redis us':>9}{'app us':>7}{'cpu x bare':>11}"
    )
    for workers in sorted({c.workers for c in cells}):
        lines.append(
            f"\nuvicorn --workers {workers}; {repeat} run(s) per cell. ok/s = correct answers "
            "(2xx, 404, 403/429) per second, mean (each run); x bare / x slowapi on ok/s;\n"
            "req/s = all answers, 503 included; p50 = mean, p99 = worst run; counts summed; "
            "redis us / app us = CPU per request of Redis / of the portal's processes;\n"
            "cpu x bare = the bare portal's CPU per request / this portal's (the ratio of req/s "
            "a portal that has a core to itself would reach; other processes sharing the "
            "cores move req/s far more than it)"
        )
        lines.append(header)
        for conns in sorted({c.conns for c in cells if c.workers == workers}):
            group = {v: keyed.get((workers, conns, v), []) for v in VARIANTS}
            base = {v: statistics.mean(ok_per_second(c) for c in g) for v, g in group.items() if g}
            for variant, runs in group.items():
                if not runs:
                    continue
                ok = base[variant]
                cls = classes(sum_dicts(c.statuses for c in runs))
                sock = sum(sum(c.socket_errors.values()) for c in runs)
                redis_us = [c.redis_us_per_req for c in runs if c.redis_us_per_req is not None]
                app_us = [c.app_us_per_req for c in runs if c.app_us_per_req is not None]
                vs_bare = f"{ok / base['bare']:.2f}" if base.get("bare") else "-"
                vs_slow = f"{ok / base['slowapi/redis']:.2f}" if base.get("slowapi/redis") else "-"
                lines.append(
                    f"{variant:<16}{conns:>6}{ok:>7.0f}"
                    f"{'(' + '/'.join(f'{ok_per_second(c):.0f}' for c in runs) + ')':>13}"
                    f"{vs_bare:>7}{vs_slow:>10}"
                    f"{statistics.mean(c.rps for c in runs):>7.0f}"
                    f"{statistics.mean(c.p50_ms for c in runs):>8.1f}"
                    f"{max(c.p99_ms for c in runs):>8.1f}"
                    f"{cls['2xx']:>7}{cls['404']:>6}{cls['refused']:>8}{cls['503']:>7}"
                    f"{cls['other']:>6}{sock:>9}"
                    f"{(f'{statistics.mean(redis_us):.0f}' if redis_us else '-'):>9}"
                    f"{(f'{statistics.mean(app_us):.0f}' if app_us else '-'):>7}"
                    f"{cpu_ratio(group.get('bare', []), app_us):>11}"
                )
    return "\n".join(lines)


def cpu_ratio(bare: list[Cell], app_us: list[float]) -> str:
    """The bare portal's CPU per request over this portal's (means of the runs)."""
    bare_us = [c.app_us_per_req for c in bare if c.app_us_per_req]
    if not bare_us or not app_us:
        return "-"
    return f"{statistics.mean(bare_us) / statistics.mean(app_us):.2f}"


def compare(after: list[Cell], before: list[Cell]) -> str:
    """after / before per cell (means over runs): ok/s, p99, 503s, Redis and portal CPU."""

    def means(cells: list[Cell]) -> dict[tuple[int, int, str], dict[str, float]]:
        grouped: dict[tuple[int, int, str], list[Cell]] = {}
        for c in cells:
            grouped.setdefault((c.workers, c.conns, c.variant), []).append(c)
        return {
            key: {
                "ok": statistics.mean(ok_per_second(c) for c in g),
                "p99": max(c.p99_ms for c in g),
                "503": sum(classes(c.statuses)["503"] for c in g),
                "redis": statistics.mean(c.redis_us_per_req or 0.0 for c in g),
                "app": statistics.mean(c.app_us_per_req or 0.0 for c in g),
            }
            for key, g in grouped.items()
        }

    new, old = means(after), means(before)
    lines = [
        "\nafter / before (the --compare file): ok/s, p99 and CPU per request as ratios; 503s as counts",
        f"{'workers':>7} {'portal':<16}{'conns':>6}{'ok/s':>8}{'p99':>8}{'503 before':>11}"
        f"{'503 after':>10}{'redis us':>9}{'app us':>8}",
    ]

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    for key in sorted(set(new) & set(old)):
        a, b = new[key], old[key]
        lines.append(
            f"{key[0]:>7} {key[2]:<16}{key[1]:>6}{ratio(a['ok'], b['ok']):>8}"
            f"{ratio(a['p99'], b['p99']):>8}{b['503']:>11.0f}{a['503']:>10.0f}"
            f"{ratio(a['redis'], b['redis']):>9}{ratio(a['app'], b['app']):>8}"
        )
    return "\n".join(lines)


def load_cells(path: Path) -> list[Cell]:
    """The cells of a ``--json`` file (its extra keys, ``rps``, left out)."""
    fields = set(Cell.__dataclass_fields__)
    return [
        Cell(**{k: v for k, v in row.items() if k in fields})
        for row in json.loads(path.read_text())
    ]


def sum_dicts(dicts: Any) -> dict[str, int]:
    """Counts summed key by key."""
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def dump_cells(cells: list[Cell]) -> str:
    """The ``--json`` file's text: every cell, its req/s too."""
    return json.dumps([asdict(c) | {"rps": c.rps} for c in cells], indent=1)
