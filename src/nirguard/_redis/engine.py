"""The Redis engine: one Lua call decides a lookup, on the server's clock.

:class:`RedisEngine` runs ``_admit.lua`` (see :mod:`nirguard._redis.script`:
a Redis Function, or a script on servers without Functions) through
redis-py's client. On a single node or behind Sentinel one call decides a
lookup; on a Redis Cluster the portal-wide keys live in one slot and a
practitioner's keys in another, so the portal step and the account step are
two calls. The script reads the time with ``TIME``: application hosts with
skewed clocks share exact windows.

The sync path calls Redis from the caller's thread, over a blocking pool
whose waits and socket timeouts are bounded by the deadline. The async path
calls a plain Redis on the event loop's own connection
(:mod:`nirguard._redis.loop`: one pipelined write per turn of the loop), and
otherwise (Cluster, Sentinel, TLS, options the channel does not know) hands
its calls to a dispatcher thread (:mod:`nirguard._redis.thread`) that pipelines
them; either way the event loop never blocks, and never mistakes its own lag
for a slow store. Only connection and timeout errors are outages
(:attr:`RedisEngine.outages`); anything else is raised as itself.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Final, TypeVar

from nirguard._compiled import CompiledPolicy
from nirguard._engine import Decision, RawStatus, Request
from nirguard._redis.codec import Codec, Plan, simulated_clock
from nirguard._redis.loop import Channel, channel_params
from nirguard._redis.outage import StoreUnavailable
from nirguard._redis.script import Call, Library, open_redis, outages
from nirguard._redis.thread import Dispatcher

__all__ = ["DEFAULT_DEADLINE", "RedisEngine"]

#: Seconds one admission may take, whatever the store does (then GuardUnavailable).
DEFAULT_DEADLINE: Final = 0.5

T = TypeVar("T")


class RedisEngine:
    """Decides lookups on Redis, one Lua call each (two on a Cluster)."""

    kind = "redis"

    __slots__ = (
        "_channel_params",
        "_channels",
        "_client",
        "_cluster",
        "_codec",
        "_deadline",
        "_dispatcher",
        "_library",
        "_make",
        "outages",
    )

    def __init__(
        self,
        uri: str,
        *,
        prefix: str,
        options: dict[str, Any] | None = None,
        deadline: float = DEFAULT_DEADLINE,
        functions: bool = True,
    ) -> None:
        options, clock = simulated_clock(options)
        self._make, self._cluster = open_redis(uri, options, deadline)
        self._codec = Codec(prefix, cluster=self._cluster, clock=clock)
        self._deadline = deadline
        self._library = Library(functions=functions)
        self._client: Any = None
        self._dispatcher = Dispatcher(self._make, self._batch, deadline=deadline)
        self._channels: dict[int, Channel] = {}
        self._channel_params: dict[str, Any] | bool | None = False  # False: not looked at yet
        self.outages: tuple[type[BaseException], ...] = (*outages(), StoreUnavailable)

    # -- driving the codec's plans ---------------------------------------------------------------

    def _args(self, call: Call) -> list[str]:
        self._library.policies[call.args[2]] = call.full[-1]
        return [*call.keys, *call.args]

    def _run(self, plan: Plan[T]) -> T:
        client = self._sync()
        start = time.monotonic()
        try:
            call = next(plan)
            while True:
                reply = self._library.call(client, self._args(call))
                call = plan.send(reply)
                if time.monotonic() - start > self._deadline:
                    plan.close()
                    raise StoreUnavailable("nirguard: deadline passed between two calls")
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _arun(self, plan: Plan[T]) -> T:
        start = time.monotonic()
        try:
            call = next(plan)
            while True:
                reply = await self._acall(self._args(call))
                call = plan.send(reply)
                if time.monotonic() - start > self._deadline:
                    plan.close()
                    raise StoreUnavailable("nirguard: deadline passed between two calls")
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _batch(self, client: Any, items: list[Any]) -> list[Any]:
        """The dispatcher's batch: ready calls, one pipeline."""
        return self._library.pipeline(client, items)

    # -- sync -----------------------------------------------------------------------------------

    def _sync(self) -> Any:
        client = self._client
        if client is None:
            client = self._client = self._make()
        return client

    def decide(self, request: Request) -> Decision:
        """Decide a lookup of a valid NIR."""
        return self._run(self._codec.decide(request))

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
        """Close the connections and stop the dispatcher thread (a later call reopens them).

        Channels of loops that have stopped are dropped; a running loop's channel is
        closed on that loop (``aclose`` closes it at once)."""
        self._dispatcher.close()
        for key, channel in list(self._channels.items()):
            if self._channels.pop(key, None) is None:
                continue  # another thread closed it
            if channel.loop.is_closed():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is channel.loop or not channel.loop.is_running():
                channel.close()
            else:
                channel.loop.call_soon_threadsafe(channel.close)
        client, self._client = self._client, None
        if client is not None:
            client.close()
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()

    # -- async: on the loop's own channel, or through the dispatcher thread ---------------------

    def _channel(self) -> Channel | None:
        """The running loop's channel to a plain Redis, or ``None`` (Cluster, Sentinel, TLS
        or options the channel does not know: the dispatcher serves those)."""
        params = self._channel_params
        if params is False:
            params = self._channel_params = (
                None if self._cluster else channel_params(self._sync().connection_pool)
            )
        if not isinstance(params, dict):
            return None
        loop = asyncio.get_running_loop()
        channel = self._channels.get(id(loop))
        if channel is None or channel.loop is not loop or channel.pid != os.getpid():
            for key, old in list(self._channels.items()):
                if old.loop.is_closed() or old.pid != os.getpid():
                    self._channels.pop(key, None)  # another thread may have pruned it
            channel = self._channels[id(loop)] = Channel(loop, params, self._deadline)
        return channel

    async def _acall(self, args: list[str]) -> Any:
        channel = self._channel()
        if channel is not None:
            return await self._library.acall(channel, args)
        return await self._dispatcher.submit(args)

    async def adecide(self, request: Request) -> Decision:
        """:meth:`decide`, without blocking the event loop."""
        return await self._arun(self._codec.decide(request))

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
        """:meth:`close`; the running loop's channel is closed too."""
        loop = asyncio.get_running_loop()
        channel = self._channels.pop(id(loop), None)
        if channel is not None:
            channel.close()
        self.close()
