"""Where a NEW patient's guarded lookup spends its time, memory store at scale (issue 20).

The at-scale samples of ``bench_guard.py`` are nearly all new patients (a random
practitioner, a random one of 50,000 patients), so their p50 is a new patient's cost.
This fills a memory store as ``_guard_memory.latency_at_scale`` does (``--practitioners``
x 30 lookups, policy ``FULL``), then times new patients:

* ``--mode time`` (default): the whole guarded call, median and p90 of wall time, GC
  off during the samples (its pauses are host noise here, not the call's cost), and the
  median per stage of the admission (reading the call, the engine's decision, the
  conclusion, the finish), each timed on its own pass over fresh patients;
* ``--mode profile``: ``cProfile`` over the samples, the top functions by own time.

Run it against two trees alternately to compare (``PYTHONPATH=<tree>/src``).

    python benchmarks/bench_new_patient.py [--practitioners 30000] [--samples 20000]
        [--rounds 3] [--mode time|profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _guard_calls import lookup, make_guard
from _policies import FULL

import nirguard
from nirguard import LookupGuard
from nirguard.testing import NIRGenerator

__all__ = ["main"]


def _filled(practitioners: int) -> tuple[LookupGuard, list[str], random.Random]:
    guard = make_guard(FULL)
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    patients = NIRGenerator(7).many(50_000)
    rng = random.Random(7)
    for p in range(practitioners):
        who = f"rpps-{p}"
        for _ in range(30):
            wrapped(who, patients[rng.randrange(len(patients))])
    return guard, NIRGenerator(11).many(200_000), rng


def _calls(
    n: int, practitioners: int, fresh: list[str], rng: random.Random
) -> list[tuple[str, str]]:
    """``n`` lookups of patients no practitioner has seen (new to each)."""
    out = []
    for _ in range(n):
        out.append((f"rpps-{rng.randrange(practitioners)}", fresh.pop()))
    return out


def _whole(guard: LookupGuard, calls: list[tuple[str, str]]) -> tuple[list[float], list[float]]:
    """Wall time and the thread's CPU time of each call (CPU time: without the time the
    host's other processes take the core, most of the wall time's spread here)."""
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    perf, cpu, wall, cpus = time.perf_counter, time.thread_time, [], []
    for who, value in calls:
        start, start_cpu = perf(), cpu()
        wrapped(who, value)
        cpus.append(cpu() - start_cpu)
        wall.append(perf() - start)
    return wall, cpus


def _stages(guard: LookupGuard, calls: list[tuple[str, str]]) -> dict[str, list[float]]:
    path = guard._path  # a benchmark takes the call apart
    engine = guard._engine
    perf = time.perf_counter
    out: dict[str, list[float]] = {"read": [], "decide": [], "conclude": [], "finish": []}
    for who, value in calls:
        t0 = perf()
        call = path._read(who, value, None)
        t1 = perf()
        decision = engine.decide(call.request)
        t2 = perf()
        ticket = path._conclude(call, call.request, decision, t0)
        t3 = perf()
        path.finish(ticket, False)
        t4 = perf()
        for name, a, b in (
            ("read", t0, t1),
            ("decide", t1, t2),
            ("conclude", t2, t3),
            ("finish", t3, t4),
        ):
            out[name].append(b - a)
    return out


def _us(values: list[float], q: float = 0.5) -> str:
    values = sorted(values)
    return f"{values[int(len(values) * q)] * 1e6:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--practitioners", type=int, default=30_000)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=("time", "profile"), default="time")
    args = parser.parse_args(argv)
    src = Path(nirguard.__file__).resolve().parents[1]
    print(
        f"# nirguard from {src}; {args.practitioners:,} practitioners x 30; load {os.getloadavg()[0]:.2f}"
    )
    guard, fresh, rng = _filled(args.practitioners)
    gc.collect()
    gc.freeze()
    if args.mode == "profile":
        calls = _calls(args.samples, args.practitioners, fresh, rng)
        wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
        prof = cProfile.Profile()
        prof.enable()
        for who, value in calls:
            wrapped(who, value)
        prof.disable()
        pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime")).print_stats(
            int(os.environ.get("TOP", "30"))
        )
        return
    gc.disable()
    for r in range(args.rounds):
        whole, cpus = _whole(guard, _calls(args.samples, args.practitioners, fresh, rng))
        stages = _stages(guard, _calls(args.samples, args.practitioners, fresh, rng))
        parts = ", ".join(f"{k} {_us(v)}" for k, v in stages.items())
        total = sum(statistics.median(v) for v in stages.values()) * 1e6
        print(
            f"round {r}: new patient, whole call p50 {_us(whole)} us, p90 {_us(whole, 0.9)} us, "
            f"CPU p50 {_us(cpus)} us; "
            f"stages p50 (us): {parts} (sum {total:.2f}); load {os.getloadavg()[0]:.2f}"
        )
    gc.enable()


if __name__ == "__main__":
    main()
