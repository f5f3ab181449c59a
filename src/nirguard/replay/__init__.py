"""Replay a week of a health portal under attack: the ``nirguard simulate`` demo.

A synthetic registry (:mod:`~nirguard.replay.registry`), a week of
legitimate practitioners (:mod:`~nirguard.replay.practitioners`), stolen
accounts running attack strategies (:mod:`~nirguard.replay.attacks`), all
replayed in simulated time through :class:`nirguard.LookupGuard`
(:mod:`~nirguard.replay.runner`) and shown as a table, JSON or a plot
(:mod:`~nirguard.replay.report`). The policies it recommends are in
:mod:`~nirguard.replay.tuning`.

>>> from nirguard.replay import ReplaySettings, run_replay
>>> result = run_replay(ReplaySettings(people=20_000, practitioners=40, days=2,
...                                    attackers=3, strategies=("enumeration",)))
>>> none = result.outcome("enumeration", "none")
>>> full = result.outcome("enumeration", "detection")
>>> full.exposed < none.exposed
True
"""

from __future__ import annotations

from nirguard.replay.runner import (
    CONFIGURATIONS,
    Outcome,
    ReplayResult,
    ReplaySettings,
    run_replay,
)

__all__ = ["CONFIGURATIONS", "Outcome", "ReplayResult", "ReplaySettings", "run_replay"]
