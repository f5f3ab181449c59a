"""Helpers shared by the benchmark scripts (timing, printing)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Best wall time of ``repeat`` runs of ``fn`` (seconds); GC off while timing."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best


def ratio_line(name: str, value: float, target: str) -> str:
    return f"{name:<58} {value:8.2f}x   (target {target})"
