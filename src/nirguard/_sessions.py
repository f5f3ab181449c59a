"""The ``session_overlap`` signal: one account, one session at a time.

In 2022 the stolen accounts were real practitioners' accounts. A bot paced like
a practice on an account whose owner keeps working adds a practice's worth of
new patients to the owner's: its volume alone looks like a busy week. What it
cannot hide from the portal is that the account is then used from **two login
sessions at once**: the owner's and the bot's. A practitioner works in one
session at a time: a new login (after a lunch break, on another computer)
takes over from the last one, which is not used again.

So when the portal passes its session id with a lookup (``session=``, a
keyed pseudonym's fingerprint here: never the id itself), the account's record
keeps the sessions that used it within :data:`MEMORY`: for each, its fingerprint
and the time of its last lookup let through; at most :data:`KEPT`, in the order
of their last use. A session is *active* for ``session_overlap`` after its last
lookup. A lookup from session ``s``:

* ``s`` used the account last: nothing to see;
* a **return**: ``s`` used the account before, and the session that used it
  since is still active (A, B, A: two sessions at once, however long A had
  been idle: a bot that paces itself between the owner's lookups is seen at
  the owner's next one);
* a **third session**: ``s`` is new while two others are active (a bot that
  logs in anew for every lookup, beside the owner);
* else a **hand-over**: a new login takes over; nothing to see.

A return or a third session is the signal ``session`` (lockout-class, like
the other signals: a question first while a break-glass budget lasts, then a
lockout, and an alert case at once) for a **new** patient. The breach also marks
the account (:data:`MARK`) for ``session_overlap``, sparing the refused session: the
others' next new patient is refused too. A reason answers the question asked, not
the window's, so a bot that used the account last and answers the owner's question
with reasons of its own gets one grant, then the lockout; a practitioner refused on
going back to a device answers and goes on there. A repeat is never
refused by it (it exposes nobody new), but marks the account
(:data:`MARK`, for ``session_overlap``): its next new patient, from either
session, is refused. So a bot cannot clear its way by re-reading a patient it
already holds before each new one. A refused lookup writes nothing of the
list; a lookup let through (a grant included) moves its session to the end.
``unlock()`` forgets both fields (the office has reset the account).

What it does not see: a bot that works only while the owner is idle for longer
than ``session_overlap`` (nights, weekends). The other quotas bound that one
(docs/guard.md, "Sessions"). The Redis twin is ``ses_*`` in ``_sessions.lua``.

>>> from nirguard import QuotaPolicy
>>> p = QuotaPolicy.only(session_overlap="30 minutes")._compiled
>>> record, changes = {}, {}
>>> see(record, changes, p, b"A" * 6, 0.0)
>>> record.update(changes)
>>> see(record, changes, p, b"B" * 6, 60.0)   # a hand-over
>>> record.update(changes)
>>> check(record, {}, p, b"A" * 6, True, 120.0)  # A again: two sessions at once
('session', 2, 1)
>>> check(record, {}, p, b"A" * 6, True, 1900.0) is None  # B idle for 30 minutes
True
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from nirguard._compiled import CompiledPolicy

__all__ = ["ENTRY", "KEPT", "LIST", "MARK", "MEMORY", "SPARED", "check", "mark", "see"]

#: The sessions that used the account lately, oldest use first: 14 bytes each, the
#: session's 6-byte fingerprint then the time of its last use (a little-endian double).
LIST: Final = "session"
#: Until when the account's next new patient is refused (a repeat was a return, or a new
#: patient was the signal), and the session it spares (:data:`SPARED`).
MARK: Final = "session:x"
#: The session a signal's mark spares: the one that was refused (it may answer with a
#: reason and go on); ``b""`` after a repeat's return (none is spared).
SPARED: Final = "session:s"
#: Bytes an entry of :data:`LIST` takes.
ENTRY: Final = 14
#: Sessions :data:`LIST` holds at most (the latest ones).
KEPT: Final = 4
#: How long :data:`LIST` remembers a session after its last use (or ``session_overlap``,
#: when longer): a return is seen after a lunch break or a night.
MEMORY: Final = 86400.0

_END: Final = struct.Struct("<d")


def _recent(packed: bytes, p: CompiledPolicy, now: float) -> list[tuple[bytes, float]]:
    """The sessions of ``packed`` used within :data:`MEMORY`: (fingerprint, last use)."""
    since = now - max(MEMORY, p.session_overlap)
    out = []
    for i in range(0, len(packed) - ENTRY + 1, ENTRY):
        used = _END.unpack_from(packed, i + 6)[0]
        if used > since:
            out.append((packed[i : i + 6], used))
    return out


def check(
    record: dict[str, Any],
    changes: dict[str, Any],
    p: CompiledPolicy,
    session: bytes,
    new: bool,
    now: float,
) -> tuple[str, int, int] | None:
    """The ``session`` breach of a new patient from ``session``: a return, a third
    session, or a mark left by a repeat; its count is the sessions at once (``session``
    and the active others), its limit 1. For a repeat: ``None``, marking the account
    in ``changes`` when it was a return or a third session."""
    if not session or not p.session_overlap:
        return None
    sessions = _recent(record.get(LIST, b""), p, now)
    active = now - p.session_overlap
    seen = 0
    if sessions and sessions[-1][0] != session:
        others = sum(1 for fp, used in sessions if used > active and fp != session)
        if any(fp == session for fp, _ in sessions):
            seen = others + 1 if sessions[-1][1] > active else 0  # a return
        elif others >= 2:
            seen = others + 1  # a third session
    if not new:
        if seen:
            mark(changes, p, b"", now)
        return None
    if seen:
        return "session", seen, 1
    if record.get(MARK, 0.0) > now and record.get(SPARED, b"") != session:
        return "session", 2, 1
    return None


def mark(changes: dict[str, Any], p: CompiledPolicy, spared: bytes, now: float) -> None:
    """Refuse the account's next new patient within ``session_overlap``, from any session
    but ``spared``."""
    changes[MARK] = now + p.session_overlap
    changes[SPARED] = spared


def see(
    record: dict[str, Any], changes: dict[str, Any], p: CompiledPolicy, session: bytes, now: float
) -> None:
    """A lookup from ``session`` let through: it is the session that used the account last;
    sessions unused for :data:`MEMORY` and the oldest beyond :data:`KEPT` are dropped."""
    if not session or not p.session_overlap:
        return
    kept = [fp + _END.pack(used) for fp, used in _recent(record.get(LIST, b""), p, now)]
    kept = [entry for entry in kept if entry[:6] != session]
    kept.append(session + _END.pack(now))
    changes[LIST] = b"".join(kept[-KEPT:])
