"""Replay weeks of a health portal under attack: the ``nirguard simulate`` demo.

A registry of whole birth cohorts (:mod:`~nirguard.replay.registry`),
weeks of legitimate practitioners (:mod:`~nirguard.replay.practitioners`),
then an attack week in which stolen accounts run one strategy at a time
(:mod:`~nirguard.replay.attacks`), every lookup replayed in simulated time
through :class:`nirguard.LookupGuard` (:mod:`~nirguard.replay.simulation`,
:mod:`~nirguard.replay.runner`), shown as a table with its targets, JSON or
a plot (:mod:`~nirguard.replay.report`). Candidate policies run fast with
``python tools/replay_tuning.py`` (in the repository). ``docs/replay.md`` has the model, its
sources and the measured results.

Example (a tiny world; ``nirguard simulate`` runs a larger one)::

    from nirguard.replay import ReplaySettings, run_replay
    result = run_replay(ReplaySettings(scale=0.02, history_weeks=1, attack_days=2))
    result.outcome("enumeration", "guard").exposed
"""

from __future__ import annotations

from nirguard.replay.outcome import Outcome, ReplayResult
from nirguard.replay.runner import run_replay
from nirguard.replay.world import CONFIGURATIONS, ReplaySettings

__all__ = ["CONFIGURATIONS", "Outcome", "ReplayResult", "ReplaySettings", "run_replay"]
