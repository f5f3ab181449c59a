"""What ``sequence`` adds to a guarded call on the memory store, measured in one run.

The shipped policy with ``sequence`` off, and as shipped (on), on the same lookups:
1,000 valid numbers, each new to its account (the worst case: the engine's part of
the signal runs only for new patients; the guard's four more keyed hashes run for
every lookup), 500 accounts. Rounds alternate which goes first; the ratio of each
round is on/off, and the median and quartiles of 30 rounds are printed. Run it at
normal priority and read the load average next to it.

    python benchmarks/bench_sequence.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nirguard import LookupDenied, LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.testing import NIRGenerator

KEY = SecretKey(bytes(range(32)), "bench")


def _guard(policy: QuotaPolicy) -> tuple[LookupGuard, list[float]]:
    now = [1_800_000_000.0]
    guard = LookupGuard(
        policy=policy,
        storage="memory://",
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        clock=lambda: now[0],
    )
    return guard, now


def _run(policy: QuotaPolicy, nirs: list[str], offset: int) -> float:
    guard, now = _guard(policy)
    start = time.perf_counter()
    for i, nir in enumerate(nirs):
        try:
            with guard.lookup(f"gp{(i * 7 + offset) % 500}", nir):
                pass
        except LookupDenied:
            pass
        now[0] += 5.0
    return (time.perf_counter() - start) / len(nirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    logging.getLogger("nirguard").setLevel(logging.CRITICAL)  # the alerts of the lockouts
    nirs = NIRGenerator(seed=1).many(1000)
    off, on = QuotaPolicy(sequence=None), QuotaPolicy()  # off; on, as shipped
    ratios = []
    for r in range(args.rounds):
        if r % 2:
            b = _run(on, nirs, r)
            a = _run(off, nirs, r)
        else:
            a = _run(off, nirs, r)
            b = _run(on, nirs, r)
        ratios.append(b / a)
    q = statistics.quantiles(ratios, n=4)
    print(f"guarded call, sequence on / off: median {statistics.median(ratios):.2f}x", end="")
    print(f" (quartiles {q[0]:.2f}x-{q[2]:.2f}x, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
