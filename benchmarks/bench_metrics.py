"""Cost of recording OpenTelemetry metrics, measured against baselines in the same run.

Prints ratios, never wall-clock verdicts (the machine is shared: read them as +-5 %):

* one ``GuardMetrics.decision()`` call (attributes cached) on the global provider
  when no SDK is installed (the proxy no-op), and on an SDK ``MeterProvider``
  with an in-memory reader, relative to an empty method call with the same
  arguments;
* a guarded call on the memory store (full policy, every lookup allowed) plus
  what the guard adds per lookup when metrics are on (two ``perf_counter()``
  reads and one ``decision()``), relative to the guarded call alone; "off" is
  the ``if metrics is not None`` test the guard keeps when metrics are off.
  When ``LookupGuard`` takes ``metrics=``, the real wiring is measured too.

    python benchmarks/bench_metrics.py [--calls 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ratio_line
from bench_guard import FULL, KEY, lookup

from nirguard import LookupGuard, Pseudonymiser
from nirguard.metrics import GuardMetrics, default_metrics
from nirguard.testing import NIRGenerator


def interleaved_best(variants: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best time of each variant over ``repeat`` rounds, the variants alternating in each round."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for name, fn in variants.items():
            gc.collect()
            gc.disable()
            try:
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
            finally:
                gc.enable()
    return best


class _Empty:
    def decision(
        self, outcome: str, quota: str | None, seconds: float, *, kind: str | None, enforced: bool
    ) -> None:
        return None


def sdk_metrics() -> GuardMetrics:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return GuardMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def recorder_alone(n: int, repeat: int) -> dict[str, float]:
    """Seconds per call: an empty call, decision() on the no-op provider and the SDK, a timing."""
    noop = default_metrics()
    assert noop is not None, "install the otel extra"
    sdk = sdk_metrics()

    def loop(m: object) -> Callable[[], None]:
        decision = m.decision  # type: ignore[attr-defined]

        def run() -> None:
            for _ in range(n):
                decision("allowed", None, 2.5e-5, kind="gp", enforced=True)

        return run

    perf = time.perf_counter

    def timing() -> None:  # what the guard adds to time a decision: two clock reads
        for _ in range(n):
            start = perf()
            perf() - start

    t = interleaved_best(
        {"empty": loop(_Empty()), "noop": loop(noop), "sdk": loop(sdk), "timing": timing}, repeat
    )
    per = {k: v / n * 1e9 for k, v in t.items()}
    print(
        f"decision(): empty call {per['empty']:.0f} ns, no-op provider {per['noop']:.0f} ns, "
        f"SDK {per['sdk']:.0f} ns"
    )
    print(
        ratio_line(
            "decision() on the no-op global provider / empty call", t["noop"] / t["empty"], "report"
        )
    )
    print(ratio_line("decision() on the SDK / empty call", t["sdk"] / t["empty"], "report"))
    return {k: v / n for k, v in t.items()}


def with_guard(calls: list[tuple[str, str]], repeat: int, parts: dict[str, float]) -> None:
    guard = LookupGuard(FULL, pseudonymiser=Pseudonymiser(KEY, purpose="guard"))
    wrapped = guard.protect(practitioner="practitioner_id", nir="nir")(lookup)
    for who, value in calls:  # warm the store: every later call is a known patient
        wrapped(who, value)
    perf = time.perf_counter

    def plain() -> None:
        for who, value in calls:
            wrapped(who, value)

    def metered(metrics: GuardMetrics | None) -> Callable[[], None]:
        # What the guard's admission step adds per lookup: time it, record it.
        def run() -> None:
            for who, value in calls:
                if metrics is not None:
                    start = perf()
                    wrapped(who, value)
                    metrics.decision("allowed", None, perf() - start, kind=None, enforced=True)
                else:
                    wrapped(who, value)

        return run

    variants: dict[str, Callable[[], object]] = {
        "plain": plain,
        "off": metered(None),
        "noop": metered(default_metrics()),
        "sdk": metered(sdk_metrics()),
    }
    if "metrics" in inspect.signature(LookupGuard).parameters:
        for name, m in (("real off", None), ("real noop", default_metrics())):
            g = LookupGuard(
                FULL,
                pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
                metrics=m,  # type: ignore[call-arg]
            )
            w = g.protect(practitioner="practitioner_id", nir="nir")(lookup)
            for who, value in calls:
                w(who, value)

            def real(w: Callable[..., object] = w) -> None:
                for who, value in calls:
                    w(who, value)

            variants[name] = real
    t = interleaved_best(variants, repeat)
    guarded = t["plain"] / len(calls)
    print(f"guarded call (memory store, full policy): {guarded * 1e6:.1f} us")
    # The difference of two noisy totals hides a 2 % cost; the parts, timed alone, do not.
    for name in ("noop", "sdk"):
        added = parts[name] + parts["timing"]
        print(
            ratio_line(
                f"(guarded call + decision() {name} + 2 clock reads) / guarded call, from the parts",
                (guarded + added) / guarded,
                "report",
            )
        )
    print(
        ratio_line(
            "guarded call, metrics off (None test) / guarded call",
            t["off"] / t["plain"],
            "<= 1.05x",
        )
    )
    print(
        ratio_line(
            "guarded call + decision() no-op provider / guarded call",
            t["noop"] / t["plain"],
            "report",
        )
    )
    print(
        ratio_line("guarded call + decision() SDK / guarded call", t["sdk"] / t["plain"], "report")
    )
    for name in ("real off", "real noop"):
        if name in t:
            print(
                ratio_line(
                    f"LookupGuard(metrics=...) {name} / guarded call",
                    t[name] / t["plain"],
                    "report",
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    values = NIRGenerator(11).many(args.calls)
    calls = [(f"rpps-{i % 200}", value) for i, value in enumerate(values)]
    parts = recorder_alone(args.calls * 5, args.repeat)
    with_guard(calls, args.repeat, parts)


if __name__ == "__main__":
    main()
