"""The memory engine's own duties: records expire with the guard's clock, memory
follows the live set, and a state can be copied (the replay reuses a history)."""

from __future__ import annotations

from nirguard import QuotaPolicy
from nirguard._engine import Request
from nirguard._memory import MemoryEngine
from nirguard._memory_store import SWEEP_PER_CALL

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


POLICY = QuotaPolicy.only(lookups="1000/minute", distinct_patients="1000/day", cohort="50/day")


def look(engine: MemoryEngine, who: str, patient: str, cohort: str = "c") -> None:
    engine.decide(Request(who, POLICY._compiled, patient, cohort))


def test_memory_follows_the_live_set_after_a_quiet_month() -> None:
    clock = Clock()
    engine = MemoryEngine(clock, prefix="t")
    for i in range(20_000):
        look(engine, f"dr{i % 2000}", f"p{i}", f"c{i % 300}")
    assert len(engine) == 4000  # an account and its recent patients, each
    clock.now += 30 * DAY
    for i in range(3):
        look(engine, "back", f"q{i}")
    assert len(engine) < 10  # the dead were swept, not kept until touched


def test_memory_stays_bounded_under_a_steady_load() -> None:
    clock = Clock()
    engine = MemoryEngine(clock, prefix="t")
    sizes = []
    for day in range(30):
        for i in range(2000):
            look(engine, f"dr{i % 100}", f"d{day}p{i}", f"c{i % 50}")
            clock.now += DAY / 2000
        sizes.append(len(engine))
    assert max(sizes[10:]) < 1.2 * min(sizes[10:])  # a plateau, not a slope


def test_a_sweep_never_takes_more_than_its_share_while_keeping_up() -> None:
    clock = Clock()
    engine = MemoryEngine(clock, prefix="t")
    for i in range(1000):
        look(engine, f"dr{i}", f"p{i}")
    clock.now += DAY + 60 + 1800  # recent patients due, but less than an hour behind
    before = len(engine)
    look(engine, "dr", "late")
    assert before - len(engine) <= SWEEP_PER_CALL


def test_snapshot_and_restore() -> None:
    clock = Clock()
    engine = MemoryEngine(clock, prefix="t")
    look(engine, "dr", "a")
    state = engine._snapshot()
    look(engine, "dr", "b")
    assert len(engine) > 0
    engine._restore(state)
    status = engine.status("dr", POLICY._compiled)
    assert status.remaining["distinct_patients"] == 999
