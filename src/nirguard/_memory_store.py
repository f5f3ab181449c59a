"""The memory engine's store: records by key, each with its expiry, swept from one heap.

Records expire for garbage collection only (decisions read the windows'
stored ends). Expired records are swept from a heap in proportion to what
has expired, so memory follows the live set even after quiet weeks.

A store lives in one process: a child forked from the process that made it
would count alone, from a copy (four children, four budgets against one).
The store notices the fork and refuses (:class:`~nirguard.errors.ConfigurationError`),
unless it was made with ``on_fork="copy"`` (``memory://?on_fork=copy``) for
deliberate copies, as the replay makes.
"""

from __future__ import annotations

import copy
import heapq
import threading
from collections.abc import Callable
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

from nirguard._hooks import forks
from nirguard._memory_records import Heat, Recent, Record
from nirguard.errors import ConfigurationError

__all__ = ["SWEEP_PER_CALL", "Store", "fork_mode"]

#: Most expired records swept per decision: a sweep never stalls one lookup,
#: and it outpaces the records a decision creates (at most four).
SWEEP_PER_CALL: Final = 64
#: When the oldest due record is this far behind the clock (a quiet night, a
#: quiet month), a decision sweeps up to :data:`SWEEP_CATCH_UP` records, so
#: memory follows the live set within a few calls (about 10 ms each at most).
SWEEP_BEHIND: Final = 3600.0
SWEEP_CATCH_UP: Final = 10_000
FORKED: Final = (
    "this memory:// guard was made before the process forked: each process would count "
    "alone, from its own copy. Make the guard after the fork, share a store (redis://), "
    "or say memory://?on_fork=copy where the copies are deliberate"
)

Stored = Record | Recent | Heat
OnFork = Literal["refuse", "copy"]
State = tuple[dict[str, Stored], list[tuple[float, str]]]


def fork_mode(uri: str) -> OnFork:
    """What a ``memory://`` URI says to do in a forked child (``?on_fork=refuse|copy``).

    Raises:
        ConfigurationError: another option, or another value.
    """
    query = uri.split("?", 1)[1] if "?" in uri else ""
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(options) - {"on_fork"}
    if unknown:
        raise ConfigurationError("memory:// takes one option, on_fork (refuse or copy)")
    mode = options.get("on_fork", "refuse")
    if mode == "refuse":
        return "refuse"
    if mode == "copy":
        return "copy"
    raise ConfigurationError("memory://?on_fork= takes refuse or copy")


class Store:
    """Records by key in this process, on the guard's clock, under one lock."""

    __slots__ = ("_copy", "_data", "_forks", "_heap", "clock", "mutex")

    def __init__(self, clock: Callable[[], float], on_fork: OnFork = "refuse") -> None:
        if on_fork not in ("refuse", "copy"):
            raise ConfigurationError("on_fork must be 'refuse' or 'copy'")
        self.clock = clock
        self.mutex = threading.Lock()
        self._data: dict[str, Stored] = {}
        self._heap: list[tuple[float, str]] = []
        #: the process's forks when the store was made (``nirguard._hooks.forks``, counted
        #: by ``os.register_at_fork``: ``os.getpid()`` is a system call, 0.5 us a lookup)
        self._forks = forks()
        self._copy = on_fork == "copy"

    def now(self, request_now: float | None) -> float:
        """The time to decide at (the request's, or the clock's); sweeps what is due.

        Raises:
            ConfigurationError: the store was made in another process (a fork).
        """
        if self._forks != forks() and not self._copy:
            raise ConfigurationError(FORKED)
        now = self.clock() if request_now is None else request_now
        heap = self._heap
        if heap and heap[0][0] <= now:
            self._sweep(now)
        return now

    def get(self, key: str, now: float) -> Any:
        """The live record under ``key``, or ``None``."""
        found = self._data.get(key)
        if found is not None and found.expires <= now:
            return None  # dead: the sweep drops it
        return found

    def record(self, key: str, now: float) -> Record:
        found: Any = self._data.get(key)  # get() inlined: three reads a lookup
        return found if found is not None and found.expires > now else Record()

    def recent(self, key: str, now: float) -> Recent:
        found: Any = self._data.get(key)
        return found if found is not None and found.expires > now else Recent()

    def put(self, key: str, record: Stored) -> None:
        """Keep ``record`` under ``key`` until its ``expires``."""
        data = self._data
        if data.get(key) is not record:
            data[key] = record
        if record.queued == 0.0:
            record.queued = record.expires
            heapq.heappush(self._heap, (record.expires, key))

    def save(
        self, key: str, record: Record, changes: dict[str, Any], keep: float, now: float
    ) -> None:
        """Apply ``changes`` to ``record`` and keep it ``keep`` seconds from ``now``."""
        if not changes:
            return
        record.update(changes)
        record.expires = now + keep
        self.put(key, record)

    def _sweep(self, now: float) -> None:
        heap, data = self._heap, self._data
        budget = SWEEP_CATCH_UP if heap[0][0] < now - SWEEP_BEHIND else SWEEP_PER_CALL
        for _ in range(budget):
            if not heap or heap[0][0] > now:
                return
            when, key = heapq.heappop(heap)
            found = data.get(key)
            if found is None or found.queued != when:
                continue  # an entry of a record since replaced
            if found.expires <= now:
                del data[key]
            else:  # extended since: look again when it is due
                found.queued = found.expires
                heapq.heappush(heap, (found.expires, key))

    def __len__(self) -> int:
        return len(self._data)

    def reset(self) -> None:
        """Forget every record."""
        with self.mutex:
            self._data.clear()
            self._heap.clear()

    def snapshot(self) -> State:
        """A deep copy of the state (the replay reuses a history this way)."""
        with self.mutex:
            return copy.deepcopy((self._data, self._heap))

    def restore(self, state: State) -> None:
        with self.mutex:
            self._data, self._heap = copy.deepcopy(state)
