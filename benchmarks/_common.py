"""Helpers shared by the benchmark scripts (timing, printing, an async pool)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


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


async def drive(batch: Sequence[T], inflight: int, call: Callable[[T], Awaitable[object]]) -> None:
    """Await ``call`` on every item of ``batch``, in order, ``inflight`` at a time: a pool of
    workers, each taking the next item as its last call returns (the async path, pipelined)."""
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(batch):
            item = batch[position]
            position += 1
            await call(item)

    await asyncio.gather(*(worker() for _ in range(inflight)))
