"""Quota stores behind the guard: four counter operations, sync and async.

The guard's decision logic (``nirguard._engine``) yields operations and the
store runs them:

* ``INCR key expiry amount`` -> new value (the key expires ``expiry``
  seconds after it was created, as in ``limits``' fixed windows);
* ``GET key`` -> value (0 when absent or expired);
* ``TTL key`` -> seconds until the key expires (0 when absent);
* ``CLEAR key``.

:class:`MemoryStore` is the embedded default: it reads time only through the
guard's clock (so tests and the replay run days in seconds), expires keys
lazily with a heap instead of scanning every key on a timer (``limits``'
``MemoryStorage`` scans all keys every 10 ms, which stalls at 10^5-10^6 keys),
and is locked once per decision so that a lookup's counters are checked and
consumed atomically. Every other URI goes to a ``limits`` storage (sync) or a
``limits.aio`` storage (async), so Redis, Redis Cluster, Sentinel and the
rest work as ``limits`` documents them.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from nirguard.errors import PolicyError

__all__ = ["AsyncLimitsStore", "LimitsStore", "MemoryStore", "Op", "open_stores"]

INCR: Final = 0
GET: Final = 1
TTL: Final = 2
CLEAR: Final = 3

#: ``(code, key, expiry, amount)``; expiry and amount only matter for INCR.
Op = tuple[int, str, float, int]

# Socket timeouts for Redis. A stalled Redis (process paused, or overloaded) still
# accepts TCP connections, so the read timeout is what bounds a lookup: 0.4 s keeps
# a refusal under the 0.5 s target. Connecting (TCP plus the client handshake) gets
# 1 s: 80 concurrent asyncio connects on a loaded 2-core host took more than 0.25 s
# and turned ordinary latency into refusals; a refused connection fails at once.
DEFAULT_REDIS_TIMEOUT: Final = 0.4
DEFAULT_REDIS_CONNECT_TIMEOUT: Final = 1.0
_PURGE_PER_OP: Final = 4


class MemoryStore:
    """In-process counters that follow an injected clock."""

    __slots__ = ("_clock", "_counts", "_expiry", "_heap", "lock")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def apply(self, op: Op) -> float:
        """Run one operation (the caller holds :attr:`lock`)."""
        code, key, expiry, amount = op
        now = self._clock()
        heap = self._heap
        if heap and heap[0][0] <= now:
            self._purge(now)
        expires = self._expiry.get(key)
        live = expires is not None and expires > now
        if code == INCR:
            if live:
                value = self._counts[key] + amount
                self._counts[key] = value
                return value
            deadline = now + expiry
            self._counts[key] = amount
            self._expiry[key] = deadline
            heapq.heappush(heap, (deadline, key))
            return amount
        if code == GET:
            return self._counts[key] if live else 0
        if code == TTL:
            return expires - now if live and expires is not None else 0.0
        if code == CLEAR:
            self._counts.pop(key, None)
            self._expiry.pop(key, None)
            return 0
        raise ValueError("unknown store operation")  # pragma: no cover

    def _purge(self, now: float) -> None:
        heap = self._heap
        for _ in range(_PURGE_PER_OP):
            if not heap or heap[0][0] > now:
                return
            deadline, key = heapq.heappop(heap)
            if self._expiry.get(key) == deadline:
                del self._expiry[key]
                del self._counts[key]

    def __len__(self) -> int:
        return len(self._counts)

    def reset(self) -> None:
        """Forget every counter."""
        with self.lock:
            self._counts.clear()
            self._expiry.clear()
            self._heap.clear()


class LimitsStore:
    """The four operations over a synchronous ``limits`` storage."""

    __slots__ = ("_storage",)

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def apply(self, op: Op) -> float:
        code, key, expiry, amount = op
        storage = self._storage
        if code == INCR:
            return int(storage.incr(key, math.ceil(expiry), amount=amount))
        if code == GET:
            return int(storage.get(key))
        if code == TTL:
            value = storage.get(key)
            if not value:
                return 0.0
            return max(0.0, float(storage.get_expiry(key)) - time.time())
        storage.clear(key)
        return 0

    def close(self) -> None:
        """Close the client's connections (Redis: disconnect its pool)."""
        client = getattr(self._storage, "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()


class AsyncLimitsStore:
    """The four operations over a ``limits.aio`` storage."""

    __slots__ = ("_storage",)

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    async def apply(self, op: Op) -> float:
        code, key, expiry, amount = op
        storage = self._storage
        if code == INCR:
            return int(await storage.incr(key, math.ceil(expiry), amount=amount))
        if code == GET:
            return int(await storage.get(key))
        if code == TTL:
            value = await storage.get(key)
            if not value:
                return 0.0
            return max(0.0, float(await storage.get_expiry(key)) - time.time())
        await storage.clear(key)
        return 0

    async def aclose(self) -> None:
        """Close the client's connections (they belong to the event loop that made them)."""
        bridge = getattr(self._storage, "bridge", None)
        client = getattr(bridge, "storage", None) or getattr(self._storage, "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()


def _redis_options(uri: str, options: dict[str, Any]) -> dict[str, Any]:
    """Short socket timeouts and no client-side retries, unless the caller says otherwise."""
    if not uri.startswith(("redis", "rediss", "async+redis", "valkey", "async+valkey")):
        return options
    merged = dict(options)
    merged.setdefault("socket_timeout", DEFAULT_REDIS_TIMEOUT)
    merged.setdefault("socket_connect_timeout", DEFAULT_REDIS_CONNECT_TIMEOUT)
    if "sentinel" in uri.split("://", 1)[0]:
        # Lockouts and budgets must be read where they were written: never from a lagging
        # replica. The sentinels themselves get the same timeouts as the master.
        merged.setdefault("use_replicas", False)
        merged.setdefault(
            "sentinel_kwargs",
            {
                "socket_timeout": merged["socket_timeout"],
                "socket_connect_timeout": merged["socket_connect_timeout"],
            },
        )
    if "retry" not in merged and not uri.startswith(("redis+cluster", "redis+sentinel")):
        try:
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ModuleNotFoundError:
            pass
        else:
            merged["retry"] = Retry(NoBackoff(), 0)
    return merged


def open_stores(
    uri: str, clock: Callable[[], float], options: dict[str, Any] | None = None
) -> tuple[MemoryStore | LimitsStore, MemoryStore | AsyncLimitsStore | None]:
    """The sync store for ``uri`` and its async twin (``None`` until first needed
    for external storages: see :func:`open_async_store`).

    Raises:
        PolicyError: unknown scheme, or the client library is missing (named
            by its extra). The URI itself (it may hold a password) is never
            put in the message.
    """
    if not isinstance(uri, str):
        raise PolicyError("storage must be a limits storage URI string")
    if uri == "memory://" or uri.startswith("memory://"):
        store = MemoryStore(clock)
        return store, store
    from limits.errors import ConfigurationError
    from limits.storage import storage_from_string

    scheme = uri.split("://", 1)[0]
    try:
        sync = storage_from_string(uri, **_redis_options(uri, options or {}))
    except ConfigurationError as exc:
        raise PolicyError(
            f"storage scheme {scheme!r} is not available: install the extra, "
            f"e.g. pip install 'nirguard[redis]' ({type(exc).__name__})"
        ) from None
    except ValueError:
        raise PolicyError(f"unknown storage scheme {scheme!r}") from None
    return LimitsStore(sync), None


def open_async_store(uri: str, options: dict[str, Any] | None = None) -> AsyncLimitsStore:
    """The ``limits.aio`` storage for ``uri`` (redis-py's asyncio client for Redis).

    Raises:
        PolicyError: as :func:`open_stores`.
    """
    from limits.errors import ConfigurationError
    from limits.storage import storage_from_string

    scheme = uri.split("://", 1)[0]
    async_uri = uri if uri.startswith("async+") else f"async+{uri}"
    extra: dict[str, Any] = {}
    if scheme.startswith("redis"):  # redis, rediss, redis+unix, redis+cluster, redis+sentinel
        extra["implementation"] = "redispy"  # one client library (redis-py) for sync and async
    opts = _redis_options(uri, {**(options or {}), **extra})
    if "retry" in opts:
        try:
            from redis.asyncio.retry import Retry as AsyncRetry
            from redis.backoff import NoBackoff
        except ModuleNotFoundError:  # pragma: no cover
            opts.pop("retry")
        else:
            opts["retry"] = AsyncRetry(NoBackoff(), 0)
    try:
        return AsyncLimitsStore(storage_from_string(async_uri, **opts))
    except ConfigurationError as exc:
        raise PolicyError(
            f"storage scheme {scheme!r} is not available for async use: install the extra, "
            f"e.g. pip install 'nirguard[redis]' ({type(exc).__name__})"
        ) from None
    except ValueError:
        raise PolicyError(f"unknown storage scheme {scheme!r}") from None
