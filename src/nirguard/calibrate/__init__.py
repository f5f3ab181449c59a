"""``nirguard calibrate``: a policy from what your practitioners really do.

Run the guard in shadow mode (``LookupGuard(..., enforce=False,
audit="audit.jsonl")``) for a few weeks, then read its log: :func:`calibrate`
measures, per kind of practitioner (the policy's ``name``, audited as
``kind``), the distributions each threshold of a policy cuts; replays the
log through the real engine under a candidate policy to count the refusals
each field would have caused; and proposes a policy per kind that refuses at
most a target share of the logged lookups, with a margin, within sane floors
and ceilings. The log holds pseudonyms only, and so does everything here:
no NIR is ever needed, read or printed.

>>> import json
>>> from nirguard import LookupGuard, QuotaPolicy
>>> from nirguard.testing import NIRGenerator
>>> lines, now = [], [1_767_000_000.0]
>>> guard = LookupGuard(QuotaPolicy(name="gp"), enforce=False, clock=lambda: now[0],
...                     audit=lambda event: lines.append(event.model_dump_json()))
>>> for number in NIRGenerator(seed=1).many(40):
...     now[0] += 600
...     with guard.lookup("gp-1", number) as lookup:
...         _ = lookup.record({"found": True})
>>> result = calibrate(LogSource(lines=lambda: lines))
>>> [(r.kind, r.stats.lookups, r.candidate_kept.refused) for r in result.kinds]
[('gp', 40, 0)]
>>> QuotaPolicy.from_json(json.dumps(result.kinds[0].proposed.model_dump(mode="json"))).name
'gp'
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from nirguard.calibrate._propose import CEILINGS, FLOORS, Choice
from nirguard.calibrate._read import LogSource
from nirguard.calibrate._replay import FieldRefusals, Summary
from nirguard.calibrate._run import Calibration, Distribution, KindReport, Progress, run
from nirguard.policy import QuotaPolicy

__all__ = [
    "CEILINGS",
    "FLOORS",
    "Calibration",
    "Choice",
    "Distribution",
    "FieldRefusals",
    "KindReport",
    "LogSource",
    "Summary",
    "calibrate",
]


def calibrate(
    logs: LogSource | Sequence[str | os.PathLike[str]],
    policies: Mapping[str | None, QuotaPolicy] | None = None,
    *,
    target: float = 0.001,
    margin: float = 0.5,
    exclude: Iterable[str] = (),
    verify: bool = True,
    progress: Progress | None = None,
) -> Calibration:
    """Read audit logs; measure, replay a candidate policy, and propose one per kind.

    Args:
        logs: JSON-lines audit logs (paths, ``"-"`` for standard input), or
            a :class:`LogSource`. Concatenated logs must be in time order.
        policies: the candidate policy per kind (the audited ``kind``); the
            ``None`` entry applies to untagged events and to kinds without
            their own (default: the shipped ``QuotaPolicy()``).
        target: the share of a kind's logged lookups a proposal may refuse.
        margin: headroom added to each proposed value (0.5 = 50%).
        exclude: practitioners left out of the distributions and of the
            refusal shares (still replayed: their traffic heats cohorts).
        verify: replay the proposals (one or two more passes over the log)
            and raise the fields that still refuse more than ``target``.
        progress: called with a line of text as each pass goes on.

    Raises:
        ValueError: ``target`` or ``margin`` out of range.
        OSError: a log cannot be read.
    """
    source = logs if isinstance(logs, LogSource) else LogSource(logs)
    try:
        return run(
            source,
            policies,
            target=target,
            margin=margin,
            exclude=exclude,
            verify=verify,
            progress=progress,
        )
    finally:
        if source is not logs:
            source.close()
