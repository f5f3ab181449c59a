"""``bench_guard.py``'s memory-store numbers: a guarded call against ``limits`` called
directly for the same windows and against the unguarded call; ``sequence`` on against
off (the thread's CPU time through fresh guards, in alternating rounds); the percentiles
of a guarded call with the store full (wall time and the thread's CPU time, with the
garbage collections during the samples).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time
from typing import NamedTuple

from _common import best_of, ratio_line
from _guard_calls import lookup, make_guard
from _policies import FULL

from nirguard import QuotaPolicy
from nirguard.testing import NIRGenerator

__all__ = [
    "AtScale",
    "guarded_time",
    "latency_at_scale",
    "limits_baseline",
    "memory_numbers",
    "on_off",
    "sequence_off",
]


def limits_baseline(calls: list[tuple[str, str]]) -> float:
    """limits alone, for the windows a guarded lookup touches (one hit each)."""
    from limits import parse_many
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    storage = MemoryStorage()
    limiter = FixedWindowRateLimiter(storage)
    per_practitioner = [
        *parse_many(FULL.lookups or ""),
        *parse_many(FULL.distinct_patients or ""),
        *parse_many(FULL.misses or ""),
        *parse_many(FULL.cohort or ""),
    ]
    portal = [*parse_many(FULL.portal or ""), *parse_many(FULL.portal_cohort or "")]

    def run() -> None:
        hit = limiter.hit
        for who, value in calls:
            for item in per_practitioner:
                hit(item, who, value[:10])
            for item in portal:
                hit(item, "portal", value[:10])
            lookup(who, value)

    try:
        return best_of(run, repeat=3)
    finally:
        timer = getattr(storage, "timer", None)
        if timer is not None:  # stop limits' expiry thread first: it races reset()
            timer.cancel()
            timer.join()
        storage.reset()


def sequence_off(policy: QuotaPolicy) -> QuotaPolicy:
    """``policy`` with ``sequence`` off, everything else as set."""
    fields = {name: getattr(policy, name) for name in policy.model_fields_set}
    return QuotaPolicy(**{**fields, "sequence": None})


def guarded_time(calls: list[tuple[str, str]], policy: QuotaPolicy = FULL) -> float:
    """Best of 3 passes of ``calls`` through one guard (so repeats after the first)."""
    guard = make_guard(policy)
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)

    def run() -> None:
        for who, value in calls:
            wrapped(who, value)

    return best_of(run, repeat=3)


def _one_pass(calls: list[tuple[str, str]], policy: QuotaPolicy) -> float:
    """The thread's CPU time of ``calls`` through a fresh guard (GC off): the time the
    host's other processes take the core is not in it."""
    guard = make_guard(policy)
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    gc.collect()
    gc.disable()
    try:
        start = time.thread_time()
        for who, value in calls:
            wrapped(who, value)
        return time.thread_time() - start
    finally:
        gc.enable()


def on_off(calls: list[tuple[str, str]], rounds: int = 6) -> tuple[float, float, float]:
    """A guarded call with ``sequence`` on (``FULL``) and off, each round through fresh
    guards, alternating which goes first (issue 17: on / off <= 1.5x): the median CPU
    time of each, and the median of the rounds' ratios."""
    off = sequence_off(FULL)
    on_times: list[float] = []
    off_times: list[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            on_times.append(_one_pass(calls, FULL))
            off_times.append(_one_pass(calls, off))
        else:
            off_times.append(_one_pass(calls, off))
            on_times.append(_one_pass(calls, FULL))
    ratios = [a / b for a, b in zip(on_times, off_times, strict=True)]
    return statistics.median(on_times), statistics.median(off_times), statistics.median(ratios)


class AtScale(NamedTuple):
    """Percentiles of a guarded call with the store full, in wall time (what a caller
    waits) and in the thread's CPU time (without the time the host's other processes
    took the core: on a shared host the wall-time p99 is mostly theirs)."""

    p50: float
    p99: float
    cpu_p50: float
    cpu_p99: float
    keys: int
    #: garbage collections during the samples, by generation, and their wall time
    collections: tuple[int, int, int]
    gc_seconds: float


class _Collections:
    """Counts the garbage collections by generation, and times them (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.counts[info["generation"]] += 1
            self.seconds += time.perf_counter() - self._start


def latency_at_scale(
    practitioners: int, per_practitioner: int, samples: int, policy: QuotaPolicy = FULL
) -> AtScale:
    """Fill a memory store (``practitioners`` x ``per_practitioner`` lookups), then time
    ``samples`` lookups of random practitioners and patients one by one."""
    guard = make_guard(policy)
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    patients = NIRGenerator(7).many(50_000)
    rng = random.Random(7)
    for p in range(practitioners):  # fill the store
        who = f"rpps-{p}"
        for _ in range(per_practitioner):
            wrapped(who, patients[rng.randrange(len(patients))])
    keys = len(guard._engine)  # type: ignore[arg-type]
    timings: list[float] = []
    cpu_timings: list[float] = []
    perf, cpu = time.perf_counter, time.thread_time
    collections = _Collections()
    gc.callbacks.append(collections)
    try:
        for _ in range(samples):
            who = f"rpps-{rng.randrange(practitioners)}"
            value = patients[rng.randrange(len(patients))]
            start, start_cpu = perf(), cpu()
            wrapped(who, value)
            cpu_timings.append(cpu() - start_cpu)
            timings.append(perf() - start)
    finally:
        gc.callbacks.remove(collections)
    timings.sort()
    cpu_timings.sort()
    p50, p99 = len(timings) // 2, int(len(timings) * 0.99)
    counts = collections.counts
    return AtScale(
        timings[p50],
        timings[p99],
        cpu_timings[p50],
        cpu_timings[p99],
        keys,
        (counts[0], counts[1], counts[2]),
        collections.seconds,
    )


def _at_scale_lines(args: argparse.Namespace, label: str, at: AtScale, base_call: float) -> None:
    print(
        f"{args.practitioners:,} practitioners x {args.per_practitioner} lookups in the memory store "
        f"({at.keys:,} keys), {label}: p50 {at.p50 * 1e3:.3f} ms, p99 {at.p99 * 1e3:.3f} ms "
        f"(target p99 <= 0.07 ms); thread CPU time p50 {at.cpu_p50 * 1e3:.3f} ms, "
        f"p99 {at.cpu_p99 * 1e3:.3f} ms; load {os.getloadavg()[0]:.1f}"
    )
    gen0, gen1, gen2 = at.collections
    print(
        f"  garbage collections during the samples: {gen0} / {gen1} / {gen2} (generations "
        f"0 / 1 / 2), {at.gc_seconds * 1e3:.1f} ms in all"
    )
    print(ratio_line(f"at scale, {label}: p50 / limits-direct call", at.p50 / base_call, "report"))
    print(ratio_line(f"at scale, {label}: p99 / limits-direct call", at.p99 / base_call, "report"))


def memory_numbers(args: argparse.Namespace, calls: list[tuple[str, str]]) -> None:
    """Print the memory store's lines: per call against the baselines, then at scale."""
    bare = best_of(lambda: [lookup(w, v) for w, v in calls], repeat=3)
    base = limits_baseline(calls)
    ours = guarded_time(calls)
    on_cpu, off_cpu, on_off_ratio = on_off(calls)
    n = len(calls)
    base_call = base / n
    print(f"== memory store (load average {os.getloadavg()[0]:.1f})")
    print(
        f"guarded call (memory store, every quota on; best of 3 passes over the same calls, "
        f"so repeats after the first): {ours / n * 1e6:.1f} us; "
        f"limits alone for the same windows: {base_call * 1e6:.1f} us; unguarded: {bare / n * 1e6:.2f} us"
    )
    print(
        f"first pass through a fresh guard, thread CPU time (median of 6): sequence on "
        f"{on_cpu / n * 1e6:.1f} us, off {off_cpu / n * 1e6:.1f} us"
    )
    print(ratio_line("guarded / limits-direct", ours / base, "<= 1.5x"))
    print(ratio_line("guarded, sequence on / off (median of 6 rounds)", on_off_ratio, "<= 1.5x"))
    print(ratio_line("guarded / unguarded", ours / bare, "report"))
    at = latency_at_scale(args.practitioners, args.per_practitioner, args.samples_scale)
    _at_scale_lines(args, "sequence on", at, base_call)
    if args.scale_off:
        off = latency_at_scale(
            args.practitioners, args.per_practitioner, args.samples_scale, sequence_off(FULL)
        )
        _at_scale_lines(args, "sequence off", off, base_call)
        print(ratio_line("at scale: p50, sequence on / off", at.p50 / off.p50, "report"))
        print(ratio_line("at scale: p99, sequence on / off", at.p99 / off.p99, "report"))
