"""Replay weeks of a health portal under attack: the ``nirguard simulate`` demo."""

from __future__ import annotations

from nirguard.replay.runner import (
    CONFIGURATIONS,
    Outcome,
    ReplayResult,
    ReplaySettings,
    run_replay,
)

__all__ = ["CONFIGURATIONS", "Outcome", "ReplayResult", "ReplaySettings", "run_replay"]
