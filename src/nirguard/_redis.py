"""The Redis engine: one Lua call decides a lookup, on the server's clock.

:class:`RedisEngine` runs ``_admit.lua`` through redis-py's clients, sync and
asyncio: as a Redis Function (``FCALL``; the library is loaded with
``FUNCTION LOAD`` the first time the server does not know it), so its helpers
are defined once and a compiled policy is parsed once per server; on a server
without Functions (Redis < 7) the same code runs through ``EVALSHA`` (``EVAL``
when the script cache does not hold it). On a single node or behind Sentinel one call decides
everything; on a Redis Cluster the portal-wide keys live in one slot and a
practitioner's keys in another, so the portal step and the account step are
two calls. The script reads the time with ``TIME``: application hosts with
skewed clocks share exact windows.

Connections: for ``redis://``, ``rediss://`` and ``unix://`` the engine
opens a *blocking* pool (a busy pool makes a lookup wait for a connection,
within the deadline, instead of failing); Cluster and Sentinel URIs are
parsed by ``limits``, whose storages build redis-py's clients. Only
connection and timeout errors are outages (:attr:`RedisEngine.outages`);
anything else is raised as itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib.resources import files
from typing import Any, Final

from nirguard._compiled import INDEFINITE, CompiledPolicy
from nirguard._engine import Decision, Keys, RawStatus, Request
from nirguard.errors import ConfigurationError

__all__ = ["DEFAULT_DEADLINE", "DEFAULT_MAX_CONNECTIONS", "RedisEngine", "open_redis"]

#: Seconds one admission may take, whatever the store does (then GuardUnavailable).
DEFAULT_DEADLINE: Final = 0.5
#: Connections per process (per event loop for asyncio) in the default blocking pool.
DEFAULT_MAX_CONNECTIONS: Final = 64

BODY: Final = files("nirguard").joinpath("_admit.lua").read_text("utf-8")
#: The library and function name carry the code's digest: two versions of nirguard
#: on one Redis (a rolling deploy) each find their own.
FUNCTION: Final = "nirguard_" + hashlib.sha256(BODY.encode("utf-8")).hexdigest()[:16]
LIBRARY: Final = f"#!lua name={FUNCTION}\n{BODY}\nredis.register_function('{FUNCTION}', main)\n"
SCRIPT: Final = f"{BODY}\nreturn main(KEYS, ARGV)\n"
SHA: Final = hashlib.sha1(SCRIPT.encode("utf-8")).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

_PLAIN: Final = ("redis", "rediss", "unix", "redis+unix")
_LIMITS: Final = ("redis+cluster", "redis+sentinel")


def _outages() -> tuple[type[BaseException], ...]:
    import redis.exceptions as rex

    found: list[type[BaseException]] = [
        TimeoutError,
        ConnectionError,
        rex.ConnectionError,
        rex.TimeoutError,
        rex.ReadOnlyError,
    ]
    for name in ("ClusterDownError", "TryAgainError", "MasterDownError"):
        extra = getattr(rex, name, None)
        if isinstance(extra, type) and issubclass(extra, BaseException):
            found.append(extra)
    return tuple(found)


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower()


def _options(uri: str, options: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Timeouts bounded by the deadline and no client retries, unless the caller says otherwise."""
    merged = dict(options)
    # RESP2: no HELLO or maintenance-notification handshake on every new connection.
    merged.setdefault("protocol", 2)
    merged.setdefault("socket_timeout", deadline)
    merged.setdefault("socket_connect_timeout", min(1.0, max(deadline, 0.05)))
    if _scheme(uri) == "redis+sentinel":
        # Lockouts and budgets must be read where they were written: never from a replica.
        merged.setdefault("use_replicas", False)
        merged.setdefault(
            "sentinel_kwargs",
            {
                "socket_timeout": merged["socket_timeout"],
                "socket_connect_timeout": merged["socket_connect_timeout"],
            },
        )
    return merged


def open_redis(
    uri: str, options: dict[str, Any] | None, deadline: float
) -> tuple[Callable[[], Any], Callable[[], Any], bool]:
    """Factories of the sync and the asyncio client for ``uri``, and whether it is a Cluster.

    Raises:
        ConfigurationError: not a Redis URI, or redis-py is missing (the
            message names the extra; it never holds the URI, which may hold a
            password).
    """
    scheme = _scheme(uri)
    if scheme not in _PLAIN and scheme not in _LIMITS:
        raise ConfigurationError(
            f"storage scheme {scheme!r} is not supported: use memory://, redis://, rediss://, "
            "unix://, redis+cluster:// or redis+sentinel://"
        )
    try:
        import redis  # noqa: F401
    except ModuleNotFoundError:
        raise ConfigurationError(
            f"storage scheme {scheme!r} needs redis-py: pip install 'nirguard[redis]'"
        ) from None
    opts = _options(uri, options or {}, deadline)
    if scheme in _PLAIN:
        return _plain_sync(uri, opts, deadline), _plain_async(uri, opts, deadline), False
    return _limits_sync(uri, opts), _limits_async(uri, opts), scheme == "redis+cluster"


def _pool_options(opts: dict[str, Any], deadline: float) -> dict[str, Any]:
    pool = dict(opts)
    pool.setdefault("max_connections", DEFAULT_MAX_CONNECTIONS)
    pool.setdefault("timeout", deadline)  # waiting for a free connection counts in the deadline
    return pool


def _plain_sync(uri: str, opts: dict[str, Any], deadline: float) -> Callable[[], Any]:
    def make() -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        pool_opts = _pool_options(opts, deadline)
        pool_opts.setdefault("retry", Retry(NoBackoff(), 0))
        url = uri.replace("redis+unix://", "unix://", 1)
        pool = redis.BlockingConnectionPool.from_url(url, **pool_opts)
        return redis.Redis(connection_pool=pool)

    return make


def _plain_async(uri: str, opts: dict[str, Any], deadline: float) -> Callable[[], Any]:
    def make() -> Any:
        import redis.asyncio as aredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        pool_opts = _pool_options(opts, deadline)
        retry = pool_opts.get("retry")
        if retry is None or not isinstance(retry, Retry):
            pool_opts["retry"] = Retry(NoBackoff(), 0)
        url = uri.replace("redis+unix://", "unix://", 1)
        pool = aredis.BlockingConnectionPool.from_url(url, **pool_opts)
        return aredis.Redis(connection_pool=pool)

    return make


def _limits_storage(uri: str, opts: dict[str, Any]) -> Any:
    from limits.errors import ConfigurationError as LimitsConfigurationError
    from limits.storage import storage_from_string

    try:
        return storage_from_string(uri, **opts)
    except LimitsConfigurationError as exc:  # pragma: no cover - redis-py checked above
        raise ConfigurationError(
            f"storage scheme {_scheme(uri)!r} is not available ({type(exc).__name__})"
        ) from None


def _limits_sync(uri: str, opts: dict[str, Any]) -> Callable[[], Any]:
    return lambda: _limits_storage(uri, opts).storage


def _limits_async(uri: str, opts: dict[str, Any]) -> Callable[[], Any]:
    def make() -> Any:
        storage = _limits_storage(f"async+{uri}", {**opts, "implementation": "redispy"})
        return storage.bridge.storage

    return make


def _missing(exc: Exception) -> str | None:
    """``"function"`` when the server lacks our library, ``"command"`` when it lacks
    Functions altogether (Redis < 7), else ``None``."""
    message = str(exc).lower()
    if "function not found" in message:
        return "function"
    if "unknown command" in message and ("fcall" in message or "function" in message):
        return "command"
    return None


def _load(function_load: Callable[..., Any]) -> None:
    from redis.exceptions import ResponseError

    try:
        function_load(LIBRARY)
    except ResponseError as exc:  # another process loaded it first
        if "already exists" not in str(exc).lower():
            raise


async def _aload(function_load: Callable[..., Awaitable[Any]]) -> None:
    from redis.exceptions import ResponseError

    try:
        await function_load(LIBRARY)
    except ResponseError as exc:
        if "already exists" not in str(exc).lower():
            raise


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


def _status(reply: Sequence[Any]) -> RawStatus:
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
    locked = pairs.get("locked_for", "")
    out.locked_for = float(locked) if locked else None
    out.level = int(pairs.get("level", "0"))
    return out


class RedisEngine:
    """Decides lookups on Redis, one script call each (two on a Cluster)."""

    kind = "redis"

    __slots__ = (
        "_async_client",
        "_async_loop",
        "_cluster",
        "_deadline",
        "_functions",
        "_make_async",
        "_make_sync",
        "_prefix",
        "_sync_client",
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
        self._make_sync, self._make_async, self._cluster = open_redis(uri, options, deadline)
        self._functions = functions
        self._prefix = prefix
        self._deadline = deadline
        self._sync_client: Any = None
        self._async_client: Any = None
        self._async_loop: object = None
        self.outages = _outages()

    # -- arguments ------------------------------------------------------------------------------

    def _keys(self, request: Request) -> Keys:
        return Keys.of(
            self._prefix,
            request.practitioner,
            request.patient,
            request.cohort,
            request.policy.heat_suffix,
        )

    @staticmethod
    def _call(
        mode: str, request: Request, keys: Sequence[str], hot: bool = False, *extra: str
    ) -> list[str]:
        flags = (
            ("1" if request.patient is not None else "0")
            + ("1" if request.cohort is not None else "0")
            + ("1" if request.reason else "0")
            + ("1" if hot else "0")
        )
        now = "" if request.now is None else repr(request.now)
        return [*keys, mode, now, request.policy.lua_policy, flags, request.patient or "", *extra]

    def _plans(self, request: Request) -> list[list[str]]:
        """One call (``admit``) on a single node; on a Cluster, ``portal`` then ``account``."""
        k = self._keys(request)
        if not self._cluster:
            keys = (k.account, k.patient, k.walk, k.portal, k.portal_seen, k.heat)
            return [self._call("admit", request, keys)]
        calls = []
        p = request.policy
        if p.portal or (p.hot_cohort is not None and request.cohort is not None):
            shared = (k.portal, k.portal, k.portal, k.portal, k.portal_seen, k.heat)
            calls.append(self._call("portal", request, shared))
        calls.append(self._call("account", request, self._own(k)))
        return calls

    @staticmethod
    def _own(k: Keys) -> tuple[str, ...]:
        return (k.account, k.patient, k.walk, k.account, k.account, k.account)

    def _account_args(self, request: Request, portal: Decision) -> list[str]:
        """The account step on a Cluster, told what the portal step found."""
        keys = self._own(self._keys(request))
        return self._call(
            "account", request, keys, portal.hot, repr(portal.heat), repr(portal.expected)
        )

    # -- sync -----------------------------------------------------------------------------------

    def _client(self) -> Any:
        client = self._sync_client
        if client is None:
            client = self._sync_client = self._make_sync()
        return client

    def _eval(self, args: list[str]) -> Any:
        from redis.exceptions import NoScriptError, ResponseError

        client = self._client()
        if self._functions:
            try:
                return client.fcall(FUNCTION, 6, *args)
            except ResponseError as exc:
                missing = _missing(exc)
                if missing is None:
                    raise
                if missing == "function":
                    _load(client.function_load)
                    return client.fcall(FUNCTION, 6, *args)
                self._functions = False  # a server without Functions: scripts from now on
        try:
            return client.evalsha(SHA, 6, *args)
        except NoScriptError:
            return client.eval(SCRIPT, 6, *args)

    def _run(self, request: Request) -> Decision:
        calls = self._plans(request)
        if len(calls) == 1:
            return _decision(self._eval(calls[0]))
        start = time.monotonic()
        portal = _decision(self._eval(calls[0]))
        if portal.outcome != "portal":
            return portal
        if time.monotonic() - start > self._deadline:
            raise TimeoutError("nirguard: deadline passed")
        decision = _decision(self._eval(self._account_args(request, portal)))
        decision.hot_alert = portal.hot_alert
        return decision

    def decide(self, request: Request) -> Decision:
        """Decide a lookup of a valid NIR."""
        return self._run(request)

    def invalid(self, request: Request) -> Decision:
        """Count an invalid NIR (after the lockout check)."""
        k = self._keys(request)
        own = (k.account,) * 6
        return _decision(self._eval(self._call("invalid", request, own)))

    def record_miss(self, request: Request) -> None:
        """Count a lookup that found nobody."""
        k = self._keys(request)
        self._eval(self._call("miss", request, (k.account,) * 6))

    def _admin(
        self, mode: str, practitioner: str, policy: CompiledPolicy, now: float | None = None
    ) -> list[str]:
        request = Request(practitioner, policy, now=now)
        k = self._keys(request)
        if self._cluster or mode == "unlock":
            return self._call(mode, request, (k.account,) * 6)
        keys = (k.account, k.account, k.account, k.portal, k.portal, k.portal)
        return self._call(mode, request, keys, True)  # status: the portal keys are there

    def status(
        self, practitioner: str, policy: CompiledPolicy, now: float | None = None
    ) -> RawStatus:
        """Remaining budget per quota, lockout and level."""
        reply = self._eval(self._admin("status", practitioner, policy, now))
        return self._with_portal(_status(reply), policy)

    def _with_portal(self, status: RawStatus, policy: CompiledPolicy) -> RawStatus:
        if not policy.portal:
            status.remaining["portal"] = None
        if status.locked_for is not None and status.locked_for > INDEFINITE / 2:
            status.locked_for = float("inf")
        return status

    def unlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """Lift the lockout; forget the escalation and the breaches."""
        self._eval(self._admin("unlock", practitioner, policy))

    def close(self) -> None:
        """Close the sync client's connections (a later call reopens them)."""
        client, self._sync_client = self._sync_client, None
        if client is not None:
            client.close()
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()

    # -- async ----------------------------------------------------------------------------------

    def _aclient(self) -> Any:
        # An asyncio client belongs to the event loop that made it.
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_loop is not loop:
            self._async_client = self._make_async()
            self._async_loop = loop
        return self._async_client

    async def _aeval(self, args: list[str]) -> Any:
        from redis.exceptions import NoScriptError, ResponseError

        client = self._aclient()
        if self._functions:
            try:
                return await client.fcall(FUNCTION, 6, *args)
            except ResponseError as exc:
                missing = _missing(exc)
                if missing is None:
                    raise
                if missing == "function":
                    await _aload(client.function_load)
                    return await client.fcall(FUNCTION, 6, *args)
                self._functions = False
        try:
            return await client.evalsha(SHA, 6, *args)
        except NoScriptError:
            return await client.eval(SCRIPT, 6, *args)

    async def _within(self, work: Awaitable[Any]) -> Any:
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(self._deadline):
                return await work
        return await asyncio.wait_for(work, self._deadline)  # pragma: no cover - Python 3.10

    async def _arun(self, request: Request) -> Decision:
        calls = self._plans(request)
        if len(calls) == 1:
            return _decision(await self._aeval(calls[0]))
        portal = _decision(await self._aeval(calls[0]))
        if portal.outcome != "portal":
            return portal
        decision = _decision(await self._aeval(self._account_args(request, portal)))
        decision.hot_alert = portal.hot_alert
        return decision

    async def adecide(self, request: Request) -> Decision:
        """:meth:`decide`, within the deadline."""
        result: Decision = await self._within(self._arun(request))
        return result

    async def ainvalid(self, request: Request) -> Decision:
        """:meth:`invalid`, within the deadline."""
        k = self._keys(request)
        reply = await self._within(self._aeval(self._call("invalid", request, (k.account,) * 6)))
        return _decision(reply)

    async def arecord_miss(self, request: Request) -> None:
        """:meth:`record_miss`, within the deadline."""
        k = self._keys(request)
        await self._within(self._aeval(self._call("miss", request, (k.account,) * 6)))

    async def astatus(self, practitioner: str, policy: CompiledPolicy) -> RawStatus:
        """:meth:`status`, within the deadline."""
        reply = await self._within(self._aeval(self._admin("status", practitioner, policy)))
        return self._with_portal(_status(reply), policy)

    async def aunlock(self, practitioner: str, policy: CompiledPolicy) -> None:
        """:meth:`unlock`, within the deadline."""
        await self._within(self._aeval(self._admin("unlock", practitioner, policy)))

    async def aclose(self) -> None:
        """Close the asyncio client's connections (from the loop that used them)."""
        client, self._async_client = self._async_client, None
        self._async_loop = None
        if client is not None:
            await client.aclose()
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                await pool.disconnect()
