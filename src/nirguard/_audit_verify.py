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

import gzip
import hmac
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Final

from nirguard._audit_seal import AuditKey, mac_ok, parse_line, seal_of, time_of
from nirguard._redact import mask_nir_runs
from nirguard.errors import InvalidKey
from nirguard.keys import SecretKey

__all__ = ["Problem", "Report", "WriterSummary", "read_files", "verify_lines"]

_MARKS: Final = frozenset({"open", "checkpoint", "close"})
#: Seconds of silence allowed past two checkpoint periods before a tail counts as cut.
GRACE: Final = 10.0
#: Problems listed by :meth:`Report.text` before it only counts them.
SHOWN: Final = 200


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
    sealed: int = 0
    verified: int = 0
    problems: list[Problem] = field(default_factory=list)
    writers: list[WriterSummary] = field(default_factory=list)
    open: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the trail verified clean."""
        return not self.problems

    def text(self, shown: int = SHOWN) -> str:
        """The report for people: problems first (at most ``shown``), then one line per writer."""
        head = (
            f"{self.lines} lines, {self.sealed} sealed, {self.verified} verified, "
            f"{len(self.writers)} writers: "
            + ("OK" if self.ok else f"{len(self.problems)} problems")
        )
        out = [head, *[str(problem) for problem in self.problems[:shown]]]
        if len(self.problems) > shown:
            out.append(f"... and {len(self.problems) - shown} more problems")
        for w in self.writers:
            state = "closed" if w.closed else "open"
            out.append(
                f"writer {w.writer}: seq {w.first}..{w.last}, {w.records} records, {state}, "
                f"last at {w.last_position}"
            )
        return "\n".join(out)


@dataclass(slots=True)
class _Link:
    seq: int
    prev: str
    mac: str
    position: str
    mark: str | None
    time: float | None
    every: float | None


@dataclass(slots=True)
class _Chain:
    links: list[_Link] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _shown(text: str) -> str:
    return mask_nir_runs(text)


def _link(data: Mapping[str, Any], seal: Mapping[str, Any], position: str) -> _Link:
    mark = data.get("chain")
    every = time_of(data.get("every"))
    return _Link(
        seq=seal["seq"],
        prev=seal["prev"],
        mac=seal["mac"],
        position=position,
        mark=mark if mark in _MARKS else None,
        time=time_of(data.get("time")),
        every=every if every is not None and every > 0 else None,
    )


class _Verifier:
    def __init__(self, keys: Mapping[str, AuditKey]) -> None:
        self.keys = keys
        self.report = Report()
        self.chains: dict[str, _Chain] = {}
        self.unknown: dict[str, tuple[int, str]] = {}
        self.latest: float | None = None

    def problem(self, code: str, position: str, writer: str | None, detail: str) -> None:
        self.report.problems.append(
            Problem(code, position, None if writer is None else _shown(writer), detail)
        )

    def feed(self, position: str, line: str) -> None:
        self.report.lines += 1
        if not line.strip():
            return
        data = parse_line(line)
        if data is None:
            self.problem("unreadable", position, None, "not a JSON object (content not shown)")
            return
        seal = seal_of(data)
        if seal is None:
            self.problem("unsealed", position, None, "a record without a valid seal: inserted?")
            return
        self.report.sealed += 1
        chain = self.chains.setdefault(seal["writer"], _Chain())
        key = self.keys.get(seal["key"])
        if key is None:
            count, first = self.unknown.get(seal["key"], (0, position))
            self.unknown[seal["key"]] = (count + 1, first)
            return
        if not mac_ok(data, seal, key):
            chain.bad.append((seal["seq"], position))
            return
        self.report.verified += 1
        link = _link(data, seal, position)
        chain.links.append(link)
        if link.time is not None and (self.latest is None or link.time > self.latest):
            self.latest = link.time

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
            self.problem("wrong_key", "-", None, "no record verifies with the key(s) given")
        reference = now if now is not None else self.latest
        for writer, chain in sorted(self.chains.items()):
            self.judge(writer, chain, reference, partial, require_closed)
        return self.report

    def judge(
        self, writer: str, chain: _Chain, ref: float | None, partial: bool, closed: bool
    ) -> None:
        if not chain.links:
            if chain.bad:
                self.problem(
                    "unverified",
                    chain.bad[0][1],
                    writer,
                    f"none of its {len(chain.bad)} records verifies: forged, or another key",
                )
            return
        by_seq = self.order(writer, chain.links)
        changed = self.altered(writer, chain.bad, by_seq)
        self.links(writer, by_seq)
        self.gaps(writer, by_seq, changed, partial)
        self.ending(writer, by_seq, ref, closed)

    def order(self, writer: str, links: list[_Link]) -> dict[int, _Link]:
        by_seq: dict[int, _Link] = {}
        top: _Link | None = None
        for link in links:
            seen = by_seq.get(link.seq)
            if seen is not None:
                same = hmac.compare_digest(seen.mac, link.mac)
                self.problem(
                    "duplicated" if same else "forked",
                    link.position,
                    writer,
                    f"seq {link.seq} again (first at {seen.position})"
                    + ("" if same else ", another record: sealed with the key"),
                )
                continue
            by_seq[link.seq] = link
            if top is not None and link.seq < top.seq:
                self.problem(
                    "reordered",
                    link.position,
                    writer,
                    f"seq {link.seq} comes after seq {top.seq} ({top.position})",
                )
            if top is None or link.seq > top.seq:
                top = link
        return by_seq

    def altered(
        self, writer: str, bad: list[tuple[int, str]], by_seq: dict[int, _Link]
    ) -> set[int]:
        changed: set[int] = set()
        for seq, position in bad:
            if seq in by_seq or seq in changed:
                where = by_seq[seq].position if seq in by_seq else "another changed record"
                detail = f"claims seq {seq}, already at {where}; its MAC does not match"
                self.problem("inserted", position, writer, detail)
            else:
                changed.add(seq)
                detail = f"seq {seq}: its MAC does not match (the record or its seal was altered)"
                self.problem("changed", position, writer, detail)
        return changed

    def links(self, writer: str, by_seq: dict[int, _Link]) -> None:
        for seq, link in sorted(by_seq.items()):
            before = by_seq.get(seq - 1)
            expected = "" if seq == 1 else (before.mac if before is not None else None)
            if expected is not None and not hmac.compare_digest(expected, link.prev):
                self.problem(
                    "chain_break", link.position, writer, f"seq {seq} does not follow seq {seq - 1}"
                )

    def gaps(self, writer: str, by_seq: dict[int, _Link], changed: set[int], partial: bool) -> None:
        low = min(by_seq) if partial else 1
        missing = sorted(set(range(low, max(by_seq) + 1)) - set(by_seq) - changed)
        runs: list[list[int]] = []
        for seq in missing:
            if runs and runs[-1][1] == seq - 1:
                runs[-1][1] = seq
            else:
                runs.append([seq, seq])
        for first, last in runs:
            after = by_seq.get(last + 1)
            before = by_seq.get(first - 1)
            where = f"before {after.position}" if after is not None else "at the end"
            if before is not None:
                where = f"between {before.position} and {after.position if after else 'the end'}"
            count = last - first + 1
            detail = f"seq {first}..{last} missing ({count} records) {where}"
            self.problem("removed", after.position if after else "-", writer, detail)

    def ending(
        self, writer: str, by_seq: dict[int, _Link], ref: float | None, closed: bool
    ) -> None:
        seqs = sorted(by_seq)
        close = next((by_seq[s] for s in seqs if by_seq[s].mark == "close"), None)
        last = by_seq[seqs[-1]]
        every = next((by_seq[s].every for s in reversed(seqs) if by_seq[s].every), None)
        self.report.writers.append(
            WriterSummary(
                _shown(writer), len(seqs), seqs[0], seqs[-1], close is not None, last.position,
                last.time,
            )
        )  # fmt: skip
        if close is not None:
            for seq in seqs:
                if seq > close.seq:
                    self.problem(
                        "after_close",
                        by_seq[seq].position,
                        writer,
                        f"seq {seq} follows the chain's closing record ({close.position})",
                    )
            return
        silent = ref is not None and last.time is not None and every is not None
        if silent and ref - last.time > 2 * every + GRACE:  # type: ignore[operator]
            self.problem(
                "tail_missing",
                last.position,
                writer,
                f"silent since {_iso(last.time)} (seq {last.seq}) though it checkpoints every "  # type: ignore[arg-type]
                f"{every:g} s and the trail goes on to {_iso(ref)}: its last records were "  # type: ignore[arg-type]
                "removed, or the writer died without closing",
            )
        elif closed:
            self.problem(
                "tail_missing",
                last.position,
                writer,
                f"no closing record after seq {last.seq}: its last records were removed, "
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
    lines: Iterable[str | tuple[str, str]],
    keys: AuditKey | Iterable[AuditKey],
    *,
    now: float | None = None,
    partial: bool = False,
    require_closed: bool = False,
) -> Report:
    """Verify sealed lines; see :func:`nirguard.audit_chain.verify_files`.

    ``lines`` are strings (positions are ``line N``) or ``(position, line)`` pairs.

    Raises:
        InvalidKey: ``keys`` holds something that is not an :class:`AuditKey`.
    """
    verifier = _Verifier(_ring(keys))
    for number, item in enumerate(lines, 1):
        position, line = item if isinstance(item, tuple) else (f"line {number}", item)
        verifier.feed(position, line)
    return verifier.finish(now, partial, require_closed)


def read_files(paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[str, str]]:
    """``(file:line, line)`` of every file in turn (``.gz`` files decompressed).

    Raises:
        OSError: a file cannot be read.
    """
    for path in paths:
        name = os.fspath(path)
        opener: Any = gzip.open if name.endswith(".gz") else open
        with opener(name, "rt", encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                yield f"{name}:{number}", line
