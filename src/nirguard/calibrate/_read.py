"""Reading an audit log, one line at a time: what each event means for a replay.

A log is any JSON-lines file of :class:`~nirguard.audit.AuditEvent` (what
``LookupGuard(audit="file.jsonl")`` writes, sealed or not, or the JSON messages
of the ``logging`` sink, with or without a prefix before the ``{``), plain or
gzipped, or standard input. Nothing is held but the current line: a log of
millions of lines streams. Lines that are not recognisably events
(:mod:`nirguard.calibrate._recognise`) are skipped and counted per reason.

Each event becomes one :class:`Entry` with an *action*:

* ``LOOKUP``: an attempt to look up a valid number, whatever the guard
  answered. Refused attempts (``denied``, ``locked``, ``suspected``,
  ``reason_required``) and the shadow mode's ``would_*`` are attempts too:
  the practitioner asked for that patient, and a candidate policy must
  decide them. ``break_glass`` and lookups logged with a reason replay with
  a stated reason.
* ``MISS``: a ``miss`` (a lookup that found nobody): replayed as a lookup,
  then counted as a miss when the candidate lets it through.
* ``INVALID``: an invalid number (``invalid``, or a refusal logged without a
  patient: ``invalid_nirs`` past its quota, or typed while locked out).

Not replayed, only counted: refusals of the input itself (an invalid
practitioner id or reason code: no policy changes them) and lookups during a
store outage (``unavailable``, ``unguarded``: the store did not count them).
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from nirguard.calibrate._recognise import recognise

__all__ = ["INVALID", "LOOKUP", "MISS", "Entry", "LogSource", "ReadStats", "read"]

LOOKUP: Final = 1
MISS: Final = 2
INVALID: Final = 3

#: How often (lines) the reader reports progress.
PROGRESS_EVERY: Final = 50_000
#: An event this much earlier than the one before it makes the log "out of order".
OUT_OF_ORDER: Final = 1.0

_OUTAGE: Final = frozenset({"unavailable", "unguarded"})
_LOCKOUT: Final = frozenset({"locked", "lockout", "would_lock", "would_lockout"})
#: How far past the clock an event may be (clocks that disagree).
CLOCK_SKEW: Final = 86400.0
_NO_PATIENT_ATTEMPT: Final = frozenset(
    {"invalid", "denied", "locked", "lockout", "would_deny", "would_lock", "would_lockout"}
)


@dataclass(slots=True)
class Entry:
    """One replayable event: who, when, what (pseudonyms only)."""

    time: float
    practitioner: str
    kind: str | None
    action: int
    patient: str | None
    cohort: str | None
    reason: bool
    hot: bool
    break_glass: bool


@dataclass(slots=True)
class ReadStats:
    """What one pass over the log saw besides the entries.

    ``unreadable`` counts the lines skipped, ``skipped`` the same per reason;
    ``locked``: per practitioner, the events of a lockout (``lockout``,
    ``locked`` and their shadow twins).
    """

    lines: int = 0
    entries: int = 0
    unreadable: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    locked: dict[str, int] = field(default_factory=dict)
    input_refusals: int = 0
    outages: int = 0
    out_of_order: int = 0
    first: float | None = None
    last: float | None = None
    cohorts: int = 0
    logged: dict[str, int] = field(default_factory=dict)


Progress = Callable[[int, float | None], None]


class LogSource:
    """One or more logs read in the order given, as many times as needed.

    Args:
        paths: files (``.gz`` are decompressed); ``"-"`` is standard input,
            copied once to a private temporary file (mode 0600, removed by
            :meth:`close`) so that it can be read again.
        lines: instead of paths, a callable returning a fresh iterable of
            lines on every call (tests, generated logs).
    """

    __slots__ = ("_lines", "_paths", "_spool", "names")

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]] = (),
        *,
        lines: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        if not paths and lines is None:
            raise ValueError("give log paths or a lines callable")
        self._lines = lines
        self._spool: str | None = None
        resolved: list[str] = []
        for p in paths:
            if str(p) == "-":
                if self._spool is None:
                    self._spool = _spool_stdin()
                resolved.append(self._spool)
            else:
                resolved.append(os.fspath(p))
        self._paths = tuple(resolved)
        self.names = tuple(str(p) for p in paths) if paths else ("<lines>",)

    def size(self) -> int | None:
        """Total bytes of the (uncompressed) files, when known, for progress."""
        if self._lines is not None or any(p.endswith(".gz") for p in self._paths):
            return None
        return sum(Path(p).stat().st_size for p in self._paths)

    def open(self) -> Iterator[str]:
        """Every line of every log, in order.

        Raises:
            OSError: a file cannot be read.
        """
        if self._lines is not None:
            yield from self._lines()
            return
        for path in self._paths:
            handle: IO[str]
            if path.endswith(".gz"):
                handle = gzip.open(path, "rt", encoding="utf-8", errors="replace")  # noqa: SIM115
            else:
                handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
            with handle:
                yield from handle

    def close(self) -> None:
        """Remove the copy of standard input, if any."""
        if self._spool is not None:
            Path(self._spool).unlink(missing_ok=True)
            self._spool = None


def _spool_stdin() -> str:
    fd, name = tempfile.mkstemp(prefix="nirguard-calibrate-", suffix=".jsonl")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out)
    return name


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _skip(stats: ReadStats, why: str) -> None:
    stats.unreadable += 1
    stats.skipped[why] = stats.skipped.get(why, 0) + 1


def _entry(data: dict[str, Any], stats: ReadStats) -> Entry | None:
    """The entry of a recognised event, or ``None`` (counted) when it is not replayed."""
    outcome, who = data["outcome"], data["practitioner"]
    stats.logged[outcome] = stats.logged.get(outcome, 0) + 1
    if outcome in _LOCKOUT:
        stats.locked[who] = stats.locked.get(who, 0) + 1
    if outcome == "unlocked":
        _skip(stats, "an administrator's action (unlocked)")
        return None
    if who == "<invalid>" or data["quota"] in ("practitioner", "reason"):
        stats.input_refusals += 1
        return None
    if outcome in _OUTAGE:
        stats.outages += 1
        return None
    patient = _optional_str(data["patient"])
    if patient is None:
        if outcome not in _NO_PATIENT_ATTEMPT:
            _skip(stats, f"{outcome} without a patient")
            return None
        action = INVALID
    else:
        action = MISS if outcome == "miss" else LOOKUP
    signals = data["signals"]
    return Entry(
        data["time"],
        who,
        data["kind"],
        action,
        patient,
        _optional_str(data["cohort"]),
        data["reason"] is not None or outcome == "break_glass",
        "hot_cohort" in signals,
        outcome == "break_glass",
    )


def read(
    source: LogSource,
    stats: ReadStats,
    *,
    progress: Progress | None = None,
) -> Iterator[Entry]:
    """The replayable entries of ``source``, in order (times made non-decreasing).

    Lines that are not recognisably audit events are skipped and counted
    (``stats.skipped``), whatever they hold: nothing in a line raises.

    Raises:
        OSError: a file cannot be read.
    """
    size = source.size()
    done = 0
    last = float("-inf")
    latest = time.time() + CLOCK_SKEW
    for line in source.open():
        stats.lines += 1
        done += len(line)
        if progress is not None and stats.lines % PROGRESS_EVERY == 0:
            progress(stats.lines, min(1.0, done / size) if size else None)
        data, why = recognise(line, latest)
        if data is None:
            if line.strip():
                _skip(stats, why)
            continue
        entry = _entry(data, stats)
        if entry is None:
            continue
        if entry.time < last:
            if entry.time < last - OUT_OF_ORDER:
                stats.out_of_order += 1
            entry.time = last
        last = entry.time
        if stats.first is None:
            stats.first = last
        stats.last = last
        if entry.cohort is not None:
            stats.cohorts += 1
        stats.entries += 1
        yield entry
    if progress is not None and stats.lines % PROGRESS_EVERY:
        progress(stats.lines, 1.0)
