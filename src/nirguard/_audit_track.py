"""One writer's verified records, kept compact: about 32 bytes per record, whatever the trail.

Internal to :mod:`nirguard._audit_verify`. A :class:`Track` holds, per sequence
number, the order of the line that carried it (``-1``: not seen) and the first
characters of its MAC and of its ``prev``: enough to find duplicates, gaps and
broken links after the MACs themselves were checked line by line.
"""

from __future__ import annotations

from array import array
from typing import Final

__all__ = ["ABSENT", "PREFIX", "Track", "prefix"]

#: Order of a sequence number not seen.
ABSENT: Final = -1
#: Characters of a MAC kept (72 bits: the MACs were checked in full already).
PREFIX: Final = 12
#: Most sequence numbers one record may jump ahead (only the key's holder could seal more).
MAX_JUMP: Final = 50_000_000


def prefix(text: str) -> bytes:
    """The first :data:`PREFIX` characters of a MAC (or of ``""``), as bytes."""
    return text[:PREFIX].encode("ascii", "replace").ljust(PREFIX, b" ")


class Track:
    """Sequence numbers ``base``, ``base + 1``... of one writer: orders, MACs and prevs."""

    __slots__ = ("base", "macs", "orders", "prevs")

    def __init__(self) -> None:
        self.base = 0
        self.orders = array("q")
        self.macs = bytearray()
        self.prevs = bytearray()

    def _grow(self, seq: int) -> int | None:
        if not self.orders:
            self.base = seq
        if seq < self.base:
            if self.base - seq > MAX_JUMP:
                return None
            more = self.base - seq
            self.orders[0:0] = array("q", [ABSENT]) * more
            self.macs[0:0] = bytes(more * PREFIX)
            self.prevs[0:0] = bytes(more * PREFIX)
            self.base = seq
        index = seq - self.base
        more = index + 1 - len(self.orders)
        if more > MAX_JUMP:
            return None
        if more > 0:
            self.orders.extend(array("q", [ABSENT]) * more)
            self.macs.extend(bytes(more * PREFIX))
            self.prevs.extend(bytes(more * PREFIX))
        return index

    def order_of(self, seq: int) -> int:
        """The order of the line that carried ``seq``, or :data:`ABSENT`."""
        index = seq - self.base
        return self.orders[index] if 0 <= index < len(self.orders) else ABSENT

    def mac_of(self, seq: int) -> bytes:
        """The MAC prefix of ``seq`` (which must be present)."""
        start = (seq - self.base) * PREFIX
        return bytes(self.macs[start : start + PREFIX])

    def add(self, seq: int, order: int, mac: str, prev: str) -> bool:
        """Record ``seq``; ``False`` when it cannot be kept (already there, or a wild jump)."""
        if self.order_of(seq) != ABSENT:
            return False
        index = self._grow(seq)
        if index is None:
            return False
        self.orders[index] = order
        self.macs[index * PREFIX : (index + 1) * PREFIX] = prefix(mac)
        self.prevs[index * PREFIX : (index + 1) * PREFIX] = prefix(prev)
        return True

    @property
    def count(self) -> int:
        """Sequence numbers present."""
        return len(self.orders) - self.orders.count(ABSENT)

    def breaks(self) -> list[int]:
        """Sequence numbers whose ``prev`` is not the MAC of the one before (when it is there)."""
        found = []
        if self.base == 1 and self.prevs[:PREFIX] != prefix(""):
            found.append(1)
        if self.macs[:-PREFIX] == self.prevs[PREFIX:] and ABSENT not in self.orders:
            return found  # the usual case: every link holds
        for index in range(1, len(self.orders)):
            if self.orders[index] == ABSENT or self.orders[index - 1] == ABSENT:
                continue
            here = self.prevs[index * PREFIX : (index + 1) * PREFIX]
            if here != self.macs[(index - 1) * PREFIX : index * PREFIX]:
                found.append(self.base + index)
        return found

    def gaps(self, low: int) -> list[tuple[int, int]]:
        """Runs ``(first, last)`` of sequence numbers missing from ``low`` to the highest."""
        runs = [(low, self.base - 1)] if low < self.base else []
        orders, index, size = self.orders, 0, len(self.orders)
        while index < size:
            try:
                index = orders.index(ABSENT, index)
            except ValueError:
                break
            end = index
            while end + 1 < size and orders[end + 1] == ABSENT:
                end += 1
            runs.append((self.base + index, self.base + end))
            index = end + 1
        return runs
