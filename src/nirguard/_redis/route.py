"""Which server a call goes to: one server, a Cluster's slot owner, a Sentinel's primary.

Routers are written once for both transports, without I/O: :meth:`Router.route`
is a generator that yields *hops* (a server and the commands to send it),
receives their replies (or has the transport's outage thrown in), and returns the
replies of the call. The engine's driver runs the hops on the sync or the async
transport (:mod:`nirguard._redis.transport`).

* :class:`Single`: every call to the one server.
* :class:`Cluster`: the owner of the call's slot, from the slot map (``CLUSTER
  SLOTS``, asked of the seed nodes then of any known node); ``MOVED`` and ``ASK``
  are followed within the call's deadline; a node that failed makes the map be
  read again before the next call. No call is sent twice after an outage.
* :class:`Sentinel`: the primary the Sentinels name (``SENTINEL
  get-master-addr-by-name``), asked again after an outage or a ``READONLY``.
"""

from __future__ import annotations

import threading
import time
from binascii import crc_hqx
from collections.abc import Generator, Sequence
from typing import Final, Protocol

from nirguard._redis.connect import Endpoint, Target
from nirguard._redis.outage import StoreUnavailable, classify
from nirguard._redis.wire import Command, Reply, ReplyError
from nirguard.errors import ConfigurationError

__all__ = ["Cluster", "Hop", "Route", "Router", "Sentinel", "Single", "router", "slot"]

#: A server, and the commands to send it in one write.
Hop = tuple[Endpoint, Sequence[Command]]
#: Yields hops, receives their replies, returns the call's replies.
Route = Generator[Hop, list[Reply], list[Reply]]

SLOTS: Final = 16384
#: Redirections followed for one call (a slot migrating, then a failover).
MAX_REDIRECTS: Final = 3
#: Seconds between two readings of the slot map after nodes failed (a failover takes
#: seconds; a stalled node must not make every call read the map again).
REREAD: Final = 1.0


def slot(key: str) -> int:
    """The Cluster hash slot of ``key`` (its ``{tag}`` when it has one)."""
    data = key.encode("utf-8")
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc_hqx(data, 0) % SLOTS


class Router(Protocol):
    """Where calls go."""

    def route(self, key: str, commands: Sequence[Command]) -> Route: ...


class Single:
    """One server."""

    __slots__ = ("node",)

    def __init__(self, node: Endpoint) -> None:
        self.node = node

    def route(self, key: str, commands: Sequence[Command]) -> Route:
        """Every call to the one server."""
        return (yield self.node, commands)


def _text(value: Reply) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Cluster:
    """A Redis Cluster's masters, by slot."""

    __slots__ = ("_failed", "_lock", "_nodes", "_read", "_slots", "seeds", "stale")

    def __init__(self, seeds: Sequence[Endpoint]) -> None:
        self.seeds = tuple(seeds)
        self._nodes: dict[tuple[str, int], Endpoint] = {(n.host, n.port): n for n in seeds}
        self._slots: list[Endpoint] | None = None
        self._lock = threading.Lock()
        self._failed: dict[Endpoint, float] = {}  # nodes that failed a call, and when
        self._read = 0.0  # when the slot map was last read
        self.stale = True

    def _node(self, host: str, port: int) -> Endpoint:
        with self._lock:
            found = self._nodes.get((host, port))
            if found is None:
                found = self._nodes[(host, port)] = self.seeds[0].at(host, port)
            return found

    def _learn(self, reply: Reply, asked: Endpoint) -> None:
        if not isinstance(reply, list) or not reply:
            raise StoreUnavailable("nirguard: the Cluster has no slot map yet")
        owners: list[Endpoint | None] = [None] * SLOTS
        for entry in reply:
            if not isinstance(entry, list) or len(entry) < 3 or not isinstance(entry[2], list):
                raise StoreUnavailable("nirguard: the Cluster's slot map cannot be read")
            low, high, master = int(_text(entry[0])), int(_text(entry[1])), entry[2]
            host = _text(master[0]) or asked.host
            node = self._node(asked.host if host == "?" else host, int(_text(master[1])))
            owners[low : high + 1] = [node] * (high + 1 - low)
        if any(owner is None for owner in owners):
            raise StoreUnavailable("nirguard: some slots of the Cluster have no master")
        self._slots = owners  # type: ignore[assignment]
        self._read = time.monotonic()
        self.stale = False

    def _refresh(self) -> Generator[Hop, list[Reply], None]:
        with self._lock:
            candidates = list(dict.fromkeys([*self.seeds, *self._nodes.values()]))
        # a node that just failed is asked last: it would only spend the deadline
        candidates.sort(key=lambda node: self._failed.get(node, 0.0))
        for node in candidates:
            try:
                (reply,) = yield node, [("CLUSTER", "SLOTS")]
            except StoreUnavailable:
                continue
            if isinstance(reply, ReplyError):
                raise classify(reply)  # "cluster support disabled": not a Cluster
            self._learn(reply, node)
            return
        raise StoreUnavailable("nirguard: no node of the Cluster answered")

    def route(self, key: str, commands: Sequence[Command]) -> Route:
        """The call on the master of ``key``'s slot, following redirections."""
        if self.stale or self._slots is None:
            yield from self._refresh()
        assert self._slots is not None
        node = self._slots[slot(key)]
        asking = False
        for _ in range(MAX_REDIRECTS + 1):
            batch = (
                [c for command in commands for c in (("ASKING",), command)] if asking else commands
            )
            try:
                replies = yield node, batch
            except StoreUnavailable:
                self._failed[node] = time.monotonic()
                if time.monotonic() - self._read > REREAD:
                    self.stale = True  # a failover may have moved the slot: read the map again
                raise
            if asking:
                replies = replies[1::2]
            redirect = next(
                (
                    r
                    for r in replies
                    if isinstance(r, ReplyError) and str(r)[:4] in ("MOVE", "ASK ")
                ),
                None,
            )
            if redirect is None:
                return replies
            kind, _, where = str(redirect).split(" ")[:3]
            host, _, port = where.rpartition(":")
            node = self._node(host or node.host, int(port))
            asking = kind == "ASK"
            if not asking:
                self.stale = True
        raise StoreUnavailable("nirguard: the Cluster kept redirecting the call")


class Sentinel:
    """The primary that Sentinels name for a service."""

    __slots__ = ("primary", "sentinels", "service", "template")

    def __init__(self, sentinels: Sequence[Endpoint], service: str, template: Endpoint) -> None:
        self.sentinels = tuple(sentinels)
        self.service = service
        self.template = template
        self.primary: Endpoint | None = None

    def _discover(self) -> Generator[Hop, list[Reply], Endpoint]:
        unknown = 0
        for node in self.sentinels:
            try:
                (reply,) = yield node, [("SENTINEL", "get-master-addr-by-name", self.service)]
            except StoreUnavailable:
                continue
            if isinstance(reply, ReplyError):
                raise classify(reply)
            if not isinstance(reply, list) or len(reply) != 2:
                unknown += 1
                continue
            self.primary = self.template.at(_text(reply[0]), int(_text(reply[1])))
            return self.primary
        if unknown == len(self.sentinels):
            raise ConfigurationError("nirguard: no Sentinel knows the service named in the URI")
        raise StoreUnavailable("nirguard: no Sentinel answered")

    def route(self, key: str, commands: Sequence[Command]) -> Route:
        """The call on the primary, found again after an outage or a ``READONLY``."""
        primary = self.primary
        if primary is None:
            primary = yield from self._discover()
        try:
            replies = yield primary, commands
        except StoreUnavailable:
            self.primary = None
            raise
        if any(isinstance(r, ReplyError) and str(r).startswith("READONLY") for r in replies):
            self.primary = None  # a demoted primary: the next call asks the Sentinels
        return replies


def router(target: Target) -> Router:
    """The router of a deployment."""
    if target.kind == "cluster":
        return Cluster(target.nodes)
    if target.kind == "sentinel":
        assert target.primary is not None
        return Sentinel(target.nodes, target.service, target.primary)
    return Single(target.nodes[0])
