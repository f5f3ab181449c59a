"""A guard hook that appends what it is given to a JSON-lines file.

Used by :mod:`nirguard.config` for ``NIRGUARD_ALERT_LOG`` and
``NIRGUARD_BREAK_GLASS_LOG``: one line per :class:`~nirguard.alerts.Alert` or
:class:`~nirguard.alerts.BreakGlass`, times in ISO 8601 (UTC, as in the audit
trail), ``retry_after`` in whole seconds, and NIR-shaped runs of any free text
masked.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["JsonLinesHook", "iso_time"]

# Thirteen or more digits (2A/2B allowed), with or without separators: a NIR, its body, or
# something that could be read as one. Free text is for people; a number like that has no
# place in a file many people read.
_NIR_LIKE = re.compile(r"(?<![0-9])[0-9](?:[ .\-\u00a0\u202f]?[0-9ABab]){12,}(?![0-9])")
_TIMES = frozenset({"time", "expires", "locked_until"})


def iso_time(seconds: float) -> str:
    """POSIX seconds as ISO 8601 in UTC, as the audit trail writes its times.

    >>> iso_time(0), iso_time(1796621631.885426)
    ('1970-01-01T00:00:00Z', '2026-12-07T05:33:51.885426Z')
    """
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _masked(text: str) -> str:
    return _NIR_LIKE.sub("[number masked]", text)


def _plain(name: str, value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(name, v) for v in value]
    if isinstance(value, str):
        return _masked(value)
    if isinstance(value, float) and name in _TIMES:
        return iso_time(value) if math.isfinite(value) else None
    if isinstance(value, float) and name == "retry_after":
        return math.ceil(value) if math.isfinite(value) else None
    return value


class JsonLinesHook:
    """A guard hook (``alert=``, ``on_break_glass=``) writing one JSON line per call.

    The file is created with mode 0600 and appended to with one ``write`` per
    line, so several processes can share it; it is opened for each line, so a
    rotated file is followed at once. Each line holds the dataclass it was
    given, with ``time`` and ``expires`` in ISO 8601 (UTC), ``retry_after`` in
    whole seconds (rounded up; ``null`` for "until unlocked"), and any run of
    13 or more digits in a text masked. A break-glass line keeps the free text
    of the stated reason, which may name a person: keep the file as private as
    the audit trail.

    >>> import tempfile, pathlib
    >>> from nirguard.alerts import Alert
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "alerts.jsonl"
    >>> hook = JsonLinesHook(path)
    >>> hook(Alert("dr-x", "cohort", {"walk": 5.0}, time=0.0, retry_after=59.9997))
    >>> line = json.loads(path.read_text())
    >>> line["time"], line["retry_after"], line["evidence"]
    ('1970-01-01T00:00:00Z', 60, {'walk': 5.0})
    """

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __call__(self, event: object) -> None:
        line = json.dumps(_plain("", event), ensure_ascii=False, sort_keys=False) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every line written so far, oldest first (``[]`` before the first)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"JsonLinesHook({str(self.path)!r})"
