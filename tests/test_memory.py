"""The memory engine's own duties: records expire with the guard's clock, memory
follows the live set, and a state can be copied (the replay reuses a history)."""

from __future__ import annotations

import os

import pytest

from nirguard import QuotaPolicy
from nirguard._engine import Request, fingerprint
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
    state = engine.snapshot()
    look(engine, "dr", "b")
    assert len(engine) > 0
    engine.restore(state)
    status = engine.status("dr", POLICY._compiled)
    assert status.remaining["distinct_patients"] == 999


# -- a memory store lives in one process ----------------------------------------------------------


def _in_children(guard_storage: str, children: int = 4) -> list[str]:
    """Each of ``children`` forked processes looks up a new patient on a guard made before
    the fork (budget: one new patient a day); what each got."""
    import multiprocessing

    from nirguard import ConfigurationError, LookupDenied, LookupGuard
    from nirguard.testing import NIRGenerator

    guard = LookupGuard(
        QuotaPolicy.only(distinct_patients="1/day", break_glass=None), storage=guard_storage
    )
    values = NIRGenerator(5).many(children)
    context = multiprocessing.get_context("fork")
    answers = context.Queue()

    def child(value: str) -> None:
        try:
            with guard.lookup("dr", value) as lookup:
                lookup.record({"found": True})
            answers.put("granted")
        except ConfigurationError as exc:
            answers.put("refused: " + str(exc)[:40])
        except LookupDenied:
            answers.put("denied")

    processes = [context.Process(target=child, args=(v,)) for v in values]
    for p in processes:
        p.start()
    got = sorted(answers.get(timeout=30) for _ in processes)
    for p in processes:
        p.join()
    return got


def test_a_memory_store_refuses_to_decide_in_a_forked_child() -> None:
    got = _in_children("memory://")
    assert got == ["refused: this memory:// guard was made before the"] * 4


def test_deliberate_copies_say_so() -> None:
    assert _in_children("memory://?on_fork=copy") == ["granted"] * 4  # each counts alone


def test_a_guard_made_in_the_child_is_its_own() -> None:
    from nirguard import LookupGuard
    from nirguard.testing import NIRGenerator

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        guard = LookupGuard(QuotaPolicy.only(distinct_patients="1/day"))
        try:
            with guard.lookup("dr", NIRGenerator(1).generate()) as lookup:
                lookup.record({"found": True})
        except BaseException:
            os._exit(1)
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


@pytest.mark.parametrize(
    "uri", ["memory://?on_fork=share", "memory://?fork=copy", "memory://?on_fork=copy&x=1"]
)
def test_memory_options_are_checked(uri: str) -> None:
    from nirguard import ConfigurationError, LookupGuard

    with pytest.raises(ConfigurationError, match="on_fork"):
        LookupGuard(storage=uri)


# -- compact records ------------------------------------------------------------------------------


def test_a_practitioners_patients_live_in_one_record_and_the_dead_leave_it() -> None:
    clock = Clock()
    engine = MemoryEngine(clock, prefix="t")
    for i in range(300):
        look(engine, "dr", f"p{i}", f"c{i % 40}")
    assert len(engine) == 2  # the account and its recent patients, whatever their number
    recent = engine._store.get("t:{dr}:r", clock.now)
    assert (len(recent.seen), len(recent.walks)) == (300, 40)
    look(engine, "dr", "p0")  # a repeat: nothing new to keep
    assert len(recent.seen) == 300
    clock.now += DAY  # every window has ended: the next write drops them all
    look(engine, "dr", "late", "c-late")
    assert (list(recent.seen), list(recent.walks)) == (
        [fingerprint("late")],
        [fingerprint("c-late")],
    )


def test_walks_stay_out_of_the_young_collections() -> None:
    # a plain dict of untracked walk tuples is untracked by a full collection, then tracked
    # again as a young object by the next walk: every young collection would then read
    # every such dict (issue 20: 1.5 ms a collection at 20,000 practitioners)
    import gc

    clock = Clock()
    engine = MemoryEngine(clock, prefix="t")
    for i in range(5):
        look(engine, "dr", f"p{i}", f"c{i}")
    recent = engine._store.get("t:{dr}:r", clock.now)
    gc.collect()
    gc.collect()  # the walks' tuples untracked by the first, a plain dict of them by the second
    assert gc.is_tracked(recent.walks)
