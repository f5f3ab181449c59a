"""Verifying a sealed audit trail: per writer, what was changed, removed, reordered or inserted.

Internal to nirguard: :func:`nirguard.audit_chain.verify_files` and
``nirguard audit verify`` are the public faces. Lines are read in the order
given (files oldest first); each sealed line is checked against its MAC, then
each writer's records are checked as a chain: sequence numbers from 1 without
a gap, in order, each ``prev`` the MAC of the record before, and a closing
record last. Nothing a line holds is ever printed but its writer id and key id
(both of a fixed alphabet, NIR-shaped runs masked) and its position.
"""

from __future__ import annotations

import bisect
import gzip
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

from nirguard._audit_seal import AuditKey, mac_ok, parse_line, seal_of, time_of
from nirguard._audit_track import ABSENT, Track, prefix
from nirguard._redact import mask_nir_runs
from nirguard.errors import InvalidKey
from nirguard.keys import SecretKey

__all__ = ["Files", "Problem", "Report", "WriterSummary", "verify_lines"]

#: Names of an audit record (event or chain record): such a line without a seal is flagged
#: even among other loggers' lines (``mixed``).
_AUDIT_LIKE: Final = frozenset({"outcome", "practitioner", "patient", "chain", "seal"})
#: Seconds of silence allowed past two checkpoint periods before a tail counts as cut.
GRACE: Final = 10.0
#: Problems listed by :meth:`Report.text` before it only counts them.
SHOWN: Final = 200
#: Problems kept in a report; more are only counted (``Report.unlisted``).
KEPT: Final = 100_000


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: a stable ``code``, where (``file:line``), whose chain, and what."""

    code: str
    position: str
    writer: str | None
    detail: str

    def __str__(self) -> str:
        who = f" writer {self.writer}:" if self.writer else ""
        return f"{self.position}: {self.code}:{who} {self.detail}"


@dataclass(frozen=True, slots=True)
class WriterSummary:
    """One writer's chain as verified: records kept, first and last seq, closed or open."""

    writer: str
    records: int
    first: int
    last: int
    closed: bool
    last_position: str
    last_time: float | None


@dataclass(slots=True)
class Report:
    """What :func:`verify_lines` found; ``ok`` when nothing is wrong.

    ``open`` lists the writers whose chain has no closing record but is not
    known to be cut (a live writer, or one whose last records were cut less
    than two checkpoint periods before the end of the trail).
    """

    lines: int = 0
    foreign: int = 0
    sealed: int = 0
    verified: int = 0
    problems: list[Problem] = field(default_factory=list)
    unlisted: int = 0
    writers: list[WriterSummary] = field(default_factory=list)
    open: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the trail verified clean."""
        return not self.problems and not self.unlisted

    def text(self, shown: int = SHOWN) -> str:
        """The report for people: problems first (at most ``shown``), then one line per writer."""
        head = (
            f"{self.lines} lines, {self.sealed} sealed, {self.verified} verified, "
            + (f"{self.foreign} of other writers, " if self.foreign else "")
            + f"{_count(len(self.writers), 'writer')}: "
            + ("OK" if self.ok else _count(len(self.problems) + self.unlisted, "problem"))
        )
        out = [head, *[str(problem) for problem in self.problems[:shown]]]
        if len(self.problems) + self.unlisted > shown:
            out.append(f"... and {len(self.problems) + self.unlisted - shown} more problems")
        for w in self.writers:
            state = "closed" if w.closed else "open"
            out.append(
                f"writer {w.writer}: seq {w.first}..{w.last}, {w.records} records, {state}, "
                f"last at {w.last_position}"
            )
        return "\n".join(out)


@dataclass(slots=True)
class _Chain:
    track: Track = field(default_factory=Track)
    bad: list[tuple[int, int]] = field(default_factory=list)
    top: int = 0
    top_order: int = ABSENT
    last_time: float | None = None
    every: float | None = None
    every_seq: int = 0
    close: tuple[int, int] | None = None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _shown(text: str) -> str:
    return mask_nir_runs(text)


def _runs(gaps: list[tuple[int, int]], changed: set[int]) -> list[tuple[int, int]]:
    """``gaps`` without the sequence numbers of changed records (they are reported as such)."""
    runs = []
    for first, last in gaps:
        for seq in sorted(s for s in changed if first <= s <= last):
            if seq > first:
                runs.append((first, seq - 1))
            first = seq + 1
        if first <= last:
            runs.append((first, last))
    return runs


class _Verifier:
    def __init__(
        self, keys: Mapping[str, AuditKey], where: Callable[[int], str], mixed: bool
    ) -> None:
        self.keys = keys
        self.mixed = mixed
        self.where = where
        self.report = Report()
        self.chains: dict[str, _Chain] = {}
        self.unknown: dict[str, tuple[int, int]] = {}
        self.latest: float | None = None

    def problem(self, code: str, order: int | None, writer: str | None, detail: str) -> None:
        if len(self.report.problems) >= KEPT:
            self.report.unlisted += 1
            return
        position = "-" if order is None else self.where(order)
        self.report.problems.append(
            Problem(code, position, None if writer is None else _shown(writer), detail)
        )

    def feed(self, order: int, line: str) -> None:
        self.report.lines += 1
        start = line.find("{")  # after a prefix a log pipeline may add (syslog, a runtime)
        data = parse_line(line[start:]) if start >= 0 else None
        if data is None:
            if self.mixed:
                self.report.foreign += bool(line.strip())
            elif line.strip():
                self.problem("unreadable", order, None, "not a JSON object (content not shown)")
            return
        seal = seal_of(data)
        if seal is None:
            if self.mixed and not _AUDIT_LIKE & data.keys():
                self.report.foreign += 1
            else:
                self.problem("unsealed", order, None, "a record without a valid seal: inserted?")
            return
        self.report.sealed += 1
        chain = self.chains.get(seal["writer"])
        if chain is None:
            chain = self.chains[seal["writer"]] = _Chain()
        key = self.keys.get(seal["key"])
        if key is None:
            count, first = self.unknown.get(seal["key"], (0, order))
            self.unknown[seal["key"]] = (count + 1, first)
        elif not mac_ok(data, seal, key):
            chain.bad.append((seal["seq"], order))
        else:
            self.report.verified += 1
            self.keep(seal["writer"], chain, data, seal, order)

    def keep(
        self,
        writer: str,
        chain: _Chain,
        data: Mapping[str, Any],
        seal: Mapping[str, Any],
        order: int,
    ) -> None:
        seq = seal["seq"]
        if not chain.track.add(seq, order, seal["mac"], seal["prev"]):
            seen = chain.track.order_of(seq)
            same = seen != ABSENT and chain.track.mac_of(seq) == prefix(seal["mac"])
            where = self.where(seen) if seen != ABSENT else "far from the rest of the chain"
            self.problem(
                "duplicated" if same else "forked",
                order,
                writer,
                f"seq {seq} again (first at {where})"
                + ("" if same else ", another record: sealed with the key"),
            )
            return
        if seq < chain.top:
            detail = f"seq {seq} comes after seq {chain.top} ({self.where(chain.top_order)})"
            self.problem("reordered", order, writer, detail)
        else:
            chain.top, chain.top_order = seq, order
            chain.last_time = time_of(data.get("time"))
            if chain.last_time is not None and (
                self.latest is None or chain.last_time > self.latest
            ):
                self.latest = chain.last_time
        mark, every = data.get("chain"), time_of(data.get("every"))
        if mark in ("open", "checkpoint") and every and every > 0 and seq >= chain.every_seq:
            chain.every, chain.every_seq = every, seq
        if mark == "close" and (chain.close is None or seq < chain.close[0]):
            chain.close = (seq, order)

    def finish(self, now: float | None, partial: bool, require_closed: bool) -> Report:
        for kid, (count, first) in sorted(self.unknown.items()):
            self.problem(
                "unknown_key",
                first,
                None,
                f"{count} records sealed with key id {_shown(kid)!r}, which was not given",
            )
        known = self.report.sealed - sum(count for count, _ in self.unknown.values())
        if known and not self.report.verified:
            self.problem("wrong_key", None, None, "no record verifies with the key(s) given")
        reference = now if now is not None else self.latest
        for writer, chain in sorted(self.chains.items()):
            self.judge(writer, chain, reference, partial, require_closed)
        return self.report

    def judge(
        self, writer: str, chain: _Chain, ref: float | None, partial: bool, closed: bool
    ) -> None:
        track = chain.track
        if not track.count:
            if chain.bad:
                self.problem(
                    "unverified",
                    chain.bad[0][1],
                    writer,
                    f"none of its {len(chain.bad)} records verifies: forged, or another key",
                )
            return
        changed = self.altered(writer, chain)
        for seq in track.breaks():
            detail = f"seq {seq} does not follow seq {seq - 1}"
            self.problem("chain_break", track.order_of(seq), writer, detail)
        for first, last in _runs(track.gaps(track.base if partial else 1), changed):
            self.gap(writer, track, first, last)
        self.ending(writer, chain, ref, closed)

    def altered(self, writer: str, chain: _Chain) -> set[int]:
        changed: set[int] = set()
        for seq, order in chain.bad:
            seen = chain.track.order_of(seq)
            if seen != ABSENT or seq in changed:
                where = self.where(seen) if seen != ABSENT else "another changed record"
                detail = f"claims seq {seq}, already at {where}; its MAC does not match"
                self.problem("inserted", order, writer, detail)
            else:
                changed.add(seq)
                detail = f"seq {seq}: its MAC does not match (the record or its seal was altered)"
                self.problem("changed", order, writer, detail)
        return changed

    def gap(self, writer: str, track: Track, first: int, last: int) -> None:
        after, before = track.order_of(last + 1), track.order_of(first - 1)
        where = f"before {self.where(after)}" if after != ABSENT else "at the end"
        if before != ABSENT:
            end = self.where(after) if after != ABSENT else "the end"
            where = f"between {self.where(before)} and {end}"
        detail = f"seq {first}..{last} missing ({_count(last - first + 1, 'record')}) {where}"
        self.problem("removed", after if after != ABSENT else None, writer, detail)

    def ending(self, writer: str, chain: _Chain, ref: float | None, closed: bool) -> None:
        track, last = chain.track, chain.top
        self.report.writers.append(
            WriterSummary(
                _shown(writer), track.count, track.base, last, chain.close is not None,
                self.where(chain.top_order), chain.last_time,
            )
        )  # fmt: skip
        if chain.close is not None:
            close_seq, close_order = chain.close
            for seq in range(close_seq + 1, last + 1):
                if track.order_of(seq) != ABSENT:
                    detail = (
                        f"seq {seq} follows the chain's closing record ({self.where(close_order)})"
                    )
                    self.problem("after_close", track.order_of(seq), writer, detail)
            return
        when, every = chain.last_time, chain.every
        if (
            ref is not None
            and when is not None
            and every is not None
            and (ref - when > 2 * every + GRACE)
        ):
            self.problem(
                "tail_missing",
                chain.top_order,
                writer,
                f"silent since {_iso(when)} (seq {last}) though it checkpoints every "
                f"{every:g} s and the trail goes on to {_iso(ref)}: its last records were "
                "removed, or the writer died without closing",
            )
        elif closed:
            self.problem(
                "tail_missing",
                chain.top_order,
                writer,
                f"no closing record after seq {last}: its last records were removed, "
                "or it has not closed",
            )
        else:
            self.report.open.append(_shown(writer))


def _ring(keys: AuditKey | Iterable[AuditKey]) -> dict[str, AuditKey]:
    found = [keys] if isinstance(keys, SecretKey) else list(keys)
    if not found or not all(isinstance(key, AuditKey) for key in found):
        raise InvalidKey("verifying needs one or more AuditKey", code="key_wrong_kind")
    return {key.key_id: key for key in found}


def verify_lines(
    lines: Iterable[str],
    keys: AuditKey | Iterable[AuditKey],
    *,
    now: float | None = None,
    partial: bool = False,
    require_closed: bool = False,
    where: Callable[[int], str] | None = None,
    mixed: bool = False,
) -> Report:
    """Verify sealed lines; see :func:`nirguard.audit_chain.verify_files`.

    Positions are ``line N`` (1-based), or what ``where(N)`` says. With ``mixed``, lines
    of other loggers (not JSON, or JSON without the names of an audit record) are counted
    in ``foreign``, not reported; an unsealed audit event still is.

    Raises:
        InvalidKey: ``keys`` holds something that is not an :class:`AuditKey`.
    """
    verifier = _Verifier(_ring(keys), where or "line {}".format, mixed)
    for number, line in enumerate(lines, 1):
        verifier.feed(number, line)
    return verifier.finish(now, partial, require_closed)


class Files:
    """The lines of several files in turn (``.gz`` decompressed), and where line N came from."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self.paths = [os.fspath(path) for path in paths]
        self.starts: list[int] = []

    def __iter__(self) -> Iterator[str]:
        """Every line of every file; raises ``OSError`` when a file cannot be read."""
        read = 0
        for name in self.paths:
            self.starts.append(read + 1)
            opener: Any = gzip.open if name.endswith(".gz") else open
            with opener(name, "rt", encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    read += 1
                    yield line

    def where(self, number: int) -> str:
        """``file:line`` of the ``number``-th line read."""
        index = bisect.bisect_right(self.starts, number) - 1
        return f"{self.paths[index]}:{number - self.starts[index] + 1}"
