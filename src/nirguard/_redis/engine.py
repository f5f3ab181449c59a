"""The Redis engine: requests in, decisions out; one Lua call decides a lookup.

:class:`RedisEngine` runs the codec's plans (:mod:`nirguard._redis.codec`: which
library calls, in which order, and what their replies mean) through the library
protocol (:mod:`nirguard._redis.script`), the router (:mod:`nirguard._redis.route`:
which server) and a transport (:mod:`nirguard._redis.transport`): the caller's
thread over a pool of sockets (sync), or the running event loop over a connection
of its own per server (async). On a single node or behind Sentinel one call
decides a lookup; on a Cluster the portal step and the account step are two
calls, each on the node that owns its slot. The script reads the time with
``TIME``: application hosts with skewed clocks share exact windows. On a single server a
lookup's one call goes straight to the transport (:meth:`RedisEngine.adecide`): the plan,
router and driver generators cost the portal ~7-8 µs of CPU per request, and are only needed
for a Cluster, for Sentinel, for the warm-up read, or to recover from an error reply.

Every failure follows one rule (:mod:`nirguard._redis.outage`): outages raise
:class:`~nirguard._redis.outage.StoreUnavailable` (:attr:`RedisEngine.outages`),
misconfigurations :class:`~nirguard.ConfigurationError`, bugs themselves; one
deadline bounds every operation, whatever the store does.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from typing import Final, TypeVar

from nirguard._compiled import CompiledPolicy
from nirguard._engine import Decision, RawStatus, Request
from nirguard._redis.codec import Codec, Plan, decision, simulated_clock
from nirguard._redis.connect import parse
from nirguard._redis.loop import LoopNodes
from nirguard._redis.outage import StoreUnavailable
from nirguard._redis.pool import SyncNodes
from nirguard._redis.route import Hop, Router, Single, router
from nirguard._redis.script import Library
from nirguard._redis.transport import arun, run
from nirguard._redis.wire import Reply, ReplyError
from nirguard.errors import ConfigurationError

__all__ = ["DEFAULT_DEADLINE", "RedisEngine"]

#: Seconds one admission may take, whatever the store does (then GuardUnavailable).
DEFAULT_DEADLINE: Final = 0.5
#: The store's share of the deadline (the rest is the guard's own work around the call).
STORE_SHARE: Final = 0.9

T = TypeVar("T")


def _hiredis() -> None:
    try:
        import hiredis  # noqa: F401
        import redis  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigurationError(
            "nirguard: a redis:// storage needs hiredis and redis-py: install nirguard's redis extra (in its checkout: pip install '.[redis]')"
        ) from None


class RedisEngine:
    """Decides lookups on Redis, one Lua call each (on a Cluster, one per slot a lookup
    needs: a repeat one, a new patient up to three, a portal quota one more)."""

    kind = "redis"

    __slots__ = (
        "_codec",
        "_deadline",
        "_library",
        "_loop",
        "_router",
        "_single",
        "_sync",
        "outages",
    )

    def __init__(
        self,
        uri: str,
        *,
        prefix: str,
        options: Mapping[str, object] | None = None,
        deadline: float = DEFAULT_DEADLINE,
        functions: bool = True,
    ) -> None:
        """Check ``uri`` and ``options``; nothing connects before the first call.

        Raises:
            ConfigurationError: an unknown scheme or option, a malformed address,
                unusable TLS settings, or the ``redis`` extra is missing.
        """
        scheme = uri.split("://", 1)[0].lower() if isinstance(uri, str) else ""
        if scheme.startswith("redis") or scheme == "unix":
            _hiredis()
        options, clock = simulated_clock(dict(options) if options is not None else None)
        target = parse(uri, options)
        self._router: Router = router(target)
        #: The one server, when there is one (the quick path of :meth:`adecide`).
        self._single = self._router.node if isinstance(self._router, Single) else None
        self._codec = Codec(prefix, cluster=target.kind == "cluster", clock=clock)
        self._deadline = target.timeout or deadline
        self._library = Library(functions=functions)
        self._sync = SyncNodes(target.max_connections)
        self._loop = LoopNodes(self._deadline)
        self.outages: tuple[type[BaseException], ...] = (StoreUnavailable,)

    def _work(self, plan: Plan[T]) -> Generator[Hop, list[Reply], T]:
        """The plan's calls, each made through the library protocol and the router."""
        call = next(plan)
        while True:
            reply = yield from self._library.exchange(call, self._router.route)
            try:
                call = plan.send(reply)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    def _run(self, plan: Plan[T]) -> T:
        return run(self._work(plan), self._sync, time.monotonic() + self._deadline * STORE_SHARE)

    async def _arun(self, plan: Plan[T]) -> T:
        return await arun(self._work(plan), self._loop, self._deadline * STORE_SHARE)

    # -- sync -----------------------------------------------------------------------------------

    def decide(self, request: Request) -> Decision:
        """Decide a lookup of a valid NIR (on a single server, the quick path of :meth:`adecide`)."""
        node = self._single
        call = None if node is None else self._codec.admit(request)
        if node is None or call is None:
            return self._run(self._codec.decide(request))
        deadline = time.monotonic() + self._deadline * STORE_SHARE
        replies = self._sync.run(node, [self._library.command(call, call.args)], deadline)
        reply = replies[-1]
        if len(replies) != 1 or isinstance(reply, ReplyError):
            reply = run(
                self._library.settle(call, self._router.route, replies), self._sync, deadline
            )
        return decision(reply)

    def invalid(self, request: Request) -> Decision:
        """Count an invalid NIR (after the lockout check)."""
        return self._run(self._codec.invalid(request))

    def record_miss(self, request: Request) -> None:
        """Count a lookup that found nobody."""
        self._run(self._codec.miss(request))

    def status(
        self, practitioner: str, policy: CompiledPolicy, now: float | None = None
    ) -> RawStatus:
        """Remaining budget per quota, lockout and level."""
        return self._run(self._codec.status(practitioner, policy, now))

    def unlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """Lift the lockout; forget the escalation and the breaches."""
        self._run(self._codec.unlock(practitioner, policy))

    def close(self) -> None:
        """Close the connections (a later call opens new ones). A running loop's
        connections are closed on that loop (``aclose`` closes them at once)."""
        self._loop.close()
        self._sync.close()

    # -- async ----------------------------------------------------------------------------------

    async def adecide(self, request: Request) -> Decision:
        """:meth:`decide`, without blocking the event loop.

        On a single server, the one call goes straight to the transport (the quick path:
        no plan, no router); a reply that is an error goes on through the library
        protocol from that reply (:meth:`Library.settle`), within the same deadline."""
        node = self._single
        call = None if node is None else self._codec.admit(request)
        if node is None or call is None:
            return await self._arun(self._codec.decide(request))
        budget = self._deadline * STORE_SHARE
        start = time.monotonic()
        replies = await self._loop.arun(node, [self._library.command(call, call.args)], budget)
        reply = replies[-1]
        if len(replies) != 1 or isinstance(reply, ReplyError):
            settling = self._library.settle(call, self._router.route, replies)
            reply = await arun(settling, self._loop, budget, start)
        return decision(reply)

    async def ainvalid(self, request: Request) -> Decision:
        """:meth:`invalid`, without blocking the event loop."""
        return await self._arun(self._codec.invalid(request))

    async def arecord_miss(self, request: Request) -> None:
        """:meth:`record_miss`, without blocking the event loop."""
        await self._arun(self._codec.miss(request))

    async def astatus(self, practitioner: str, policy: CompiledPolicy) -> RawStatus:
        """:meth:`status`, without blocking the event loop."""
        return await self._arun(self._codec.status(practitioner, policy))

    async def aunlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """:meth:`unlock`, without blocking the event loop."""
        await self._arun(self._codec.unlock(practitioner, policy))

    async def aclose(self) -> None:
        """:meth:`close`; the running loop's connections are closed at once."""
        self.close()
