"""The Redis engine: one Lua call decides a lookup, on the server's clock.

:class:`RedisEngine` runs ``_admit.lua`` (see :mod:`nirguard._redis_client`:
a Redis Function, or a script on servers without Functions) through
redis-py's client. On a single node or behind Sentinel one call decides a
lookup; on a Redis Cluster the portal-wide keys live in one slot and a
practitioner's keys in another, so the portal step and the account step are
two calls. The script reads the time with ``TIME``: application hosts with
skewed clocks share exact windows.

The sync path calls Redis from the caller's thread, over a blocking pool
whose waits and socket timeouts are bounded by the deadline. The async path
calls a plain Redis on the event loop's own connection
(:mod:`nirguard._channel`: one pipelined write per turn of the loop), and
otherwise (Cluster, Sentinel, TLS, options the channel does not know) hands
its calls to a dispatcher thread (:mod:`nirguard._dispatch`) that pipelines
them; either way the event loop never blocks, and never mistakes its own lag
for a slow store. Only connection and timeout errors are outages
(:attr:`RedisEngine.outages`); anything else is raised as itself.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any, Final

from nirguard._channel import Channel, channel_params
from nirguard._compiled import INDEFINITE, CompiledPolicy
from nirguard._dispatch import Dispatcher
from nirguard._engine import Decision, Keys, RawStatus, Request
from nirguard._redis_client import Library, open_redis, outages

__all__ = ["DEFAULT_DEADLINE", "RedisEngine"]

#: Seconds one admission may take, whatever the store does (then GuardUnavailable).
DEFAULT_DEADLINE: Final = 0.5


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decision(reply: Sequence[Any]) -> Decision:
    """The script's reply: two strings, then integers (-1 for "none"; times in ms)."""
    outcome, quota = _text(reply[0]), _text(reply[1])
    retry, started, level, hot, alert, heat, expected, left, count, limit = (
        int(v) for v in reply[2:12]
    )
    return Decision(
        outcome=outcome,
        quota=quota or None,
        retry_after=retry / 1000 if retry >= 0 else None,
        lockout_started=started == 1,
        level=level,
        hot=hot == 1,
        hot_alert=alert == 1,
        heat=heat / 1000,
        expected=expected / 1000,
        break_glass_left=left if left >= 0 else None,
        count=count if count >= 0 else None,
        limit=limit if limit >= 0 else None,
    )


def _status(reply: Sequence[Any], policy: CompiledPolicy) -> RawStatus:
    items = [_text(v) for v in reply]
    out = RawStatus()
    pairs = dict(zip(items[::2], items[1::2], strict=True))
    for name in (
        "lookups",
        "distinct_patients",
        "invalid_nirs",
        "misses",
        "portal_cohort",
        "break_glass",
        "portal",
    ):
        value = pairs.get(name, "")
        out.remaining[name] = int(value) if value else None
    if not policy.portal:
        out.remaining["portal"] = None
    locked = pairs.get("locked_for", "")
    out.locked_for = float(locked) if locked else None
    if out.locked_for is not None and out.locked_for > INDEFINITE / 2:
        out.locked_for = float("inf")
    out.level = int(pairs.get("level", "0"))
    return out


class RedisEngine:
    """Decides lookups on Redis, one Lua call each (two on a Cluster)."""

    kind = "redis"

    __slots__ = (
        "_channel_params",
        "_channels",
        "_client",
        "_cluster",
        "_deadline",
        "_dispatcher",
        "_library",
        "_make",
        "_prefix",
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
        self._make, self._cluster = open_redis(uri, options, deadline)
        self._prefix = prefix
        self._deadline = deadline
        self._library = Library(functions=functions)
        self._client: Any = None
        self._dispatcher = Dispatcher(self._make, self._batch, deadline=deadline)
        self._channels: dict[int, Channel] = {}
        self._channel_params: dict[str, Any] | bool | None = False  # False: not looked at yet
        self.outages = outages()

    # -- arguments ------------------------------------------------------------------------------

    def _keys(self, request: Request) -> Keys:
        return Keys(
            self._prefix,
            request.practitioner,
            request.patient,
            request.cohort,
            request.policy.heat_suffix,
        )

    def _args(
        self, mode: str, request: Request, keys: Sequence[str], hot: bool = False, *extra: str
    ) -> list[str]:
        flags = (
            ("1" if request.patient is not None else "0")
            + ("1" if request.cohort is not None else "0")
            + ("1" if request.reason else "0")
            + ("1" if hot else "0")
        )
        now = "" if request.now is None else repr(request.now)
        policy = request.policy
        self._library.policies[policy.lua_digest] = policy.lua_policy
        return [*keys, mode, now, policy.lua_digest, flags, request.patient or "", *extra]

    def _admit_args(self, request: Request) -> list[str]:
        k = self._keys(request)
        keys = (k.account, k.patient, k.walk, k.portal, k.portal_seen, k.heat)
        return self._args("admit", request, keys)

    def _own_args(self, request: Request, mode: str) -> list[str]:
        return self._args(mode, request, (self._keys(request).account,) * 6)

    def _admin_args(
        self, mode: str, practitioner: str, policy: CompiledPolicy, now: float | None = None
    ) -> list[str]:
        request = Request(practitioner, policy, now=now)
        k = self._keys(request)
        if self._cluster or mode == "unlock":
            return self._args(mode, request, (k.account,) * 6)
        keys = (k.account, k.account, k.account, k.portal, k.portal, k.portal)
        return self._args(mode, request, keys, True)  # status: the portal keys are there

    # -- Cluster: the portal step (its slot), then the account step (the practitioner's) ----

    def _portal_args(self, request: Request) -> list[str] | None:
        p = request.policy
        if not p.portal and (p.hot_cohort is None or request.cohort is None):
            return None
        k = self._keys(request)
        return self._args("portal", request, (k.portal,) * 4 + (k.portal_seen, k.heat))

    def _account_args(self, request: Request, portal: Decision) -> list[str]:
        k = self._keys(request)
        own = (k.account, k.patient, k.walk, k.account, k.account, k.account)
        return self._args(
            "account", request, own, portal.hot, repr(portal.heat), repr(portal.expected)
        )

    def _cluster_decide(self, client: Any, request: Request) -> Decision:
        start = time.monotonic()
        portal = Decision("portal")
        first = self._portal_args(request)
        if first is not None:
            portal = _decision(self._library.call(client, first))
            if portal.outcome != "portal":
                return portal
            if time.monotonic() - start > self._deadline:
                raise TimeoutError("nirguard: deadline passed between the two calls")
        decision = _decision(self._library.call(client, self._account_args(request, portal)))
        decision.hot_alert = portal.hot_alert
        return decision

    # -- the dispatcher's batches --------------------------------------------------------------

    def _batch(self, client: Any, items: list[Any]) -> list[Any]:
        """Run the async path's items in as few round trips as possible: plain calls
        (argument lists) in one pipeline; on a Cluster, decisions (requests) in two
        pipelines, every portal step, then every account step."""
        results: list[Any] = [None] * len(items)
        first: list[tuple[int, list[str]]] = []
        for i, item in enumerate(items):
            if isinstance(item, Request):
                args = self._portal_args(item)
                if args is not None:
                    first.append((i, args))
            else:
                first.append((i, item))
        start = time.monotonic()
        portals: dict[int, Decision] = {}
        if first:
            replies = self._library.pipeline(client, [args for _, args in first])
            for (i, _), reply in zip(first, replies, strict=True):
                if not isinstance(items[i], Request) or isinstance(reply, Exception):
                    results[i] = reply
                    continue
                portal = _decision(reply)
                if portal.outcome == "portal":
                    portals[i] = portal
                else:
                    results[i] = portal
        second = [
            (i, self._account_args(item, portals.get(i, Decision("portal"))))
            for i, item in enumerate(items)
            if isinstance(item, Request) and results[i] is None
        ]
        if second and time.monotonic() - start > self._deadline:
            for i, _ in second:
                results[i] = TimeoutError("nirguard: deadline passed between the two calls")
            return results
        if second:
            replies = self._library.pipeline(client, [args for _, args in second])
            for (i, _), reply in zip(second, replies, strict=True):
                if isinstance(reply, Exception):
                    results[i] = reply
                    continue
                decision = _decision(reply)
                found = portals.get(i)
                decision.hot_alert = found is not None and found.hot_alert
                results[i] = decision
        return results

    # -- sync -----------------------------------------------------------------------------------

    def _sync(self) -> Any:
        client = self._client
        if client is None:
            client = self._client = self._make()
        return client

    def decide(self, request: Request) -> Decision:
        """Decide a lookup of a valid NIR."""
        if self._cluster:
            return self._cluster_decide(self._sync(), request)
        return _decision(self._library.call(self._sync(), self._admit_args(request)))

    def invalid(self, request: Request) -> Decision:
        """Count an invalid NIR (after the lockout check)."""
        return _decision(self._library.call(self._sync(), self._own_args(request, "invalid")))

    def record_miss(self, request: Request) -> None:
        """Count a lookup that found nobody."""
        self._library.call(self._sync(), self._own_args(request, "miss"))

    def status(
        self, practitioner: str, policy: CompiledPolicy, now: float | None = None
    ) -> RawStatus:
        """Remaining budget per quota, lockout and level."""
        args = self._admin_args("status", practitioner, policy, now)
        return _status(self._library.call(self._sync(), args), policy)

    def unlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """Lift the lockout; forget the escalation and the breaches."""
        self._library.call(self._sync(), self._admin_args("unlock", practitioner, policy))

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
        if self._cluster:
            decision: Decision = await self._dispatcher.submit(request)
            return decision
        return _decision(await self._acall(self._admit_args(request)))

    async def ainvalid(self, request: Request) -> Decision:
        """:meth:`invalid`, without blocking the event loop."""
        return _decision(await self._acall(self._own_args(request, "invalid")))

    async def arecord_miss(self, request: Request) -> None:
        """:meth:`record_miss`, without blocking the event loop."""
        await self._acall(self._own_args(request, "miss"))

    async def astatus(self, practitioner: str, policy: CompiledPolicy) -> RawStatus:
        """:meth:`status`, without blocking the event loop."""
        reply = await self._acall(self._admin_args("status", practitioner, policy))
        return _status(reply, policy)

    async def aunlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """:meth:`unlock`, without blocking the event loop."""
        await self._acall(self._admin_args("unlock", practitioner, policy))

    async def aclose(self) -> None:
        """:meth:`close`; the running loop's channel is closed too."""
        loop = asyncio.get_running_loop()
        channel = self._channels.pop(id(loop), None)
        if channel is not None:
            channel.close()
        self.close()
