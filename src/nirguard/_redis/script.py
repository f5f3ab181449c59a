"""Redis connections for the guard, and calling its Lua library on them.

* :func:`open_redis` turns a storage URI into a factory of redis-py clients:
  for ``redis://``, ``rediss://`` and ``unix://`` a client over a *blocking*
  pool (a busy pool makes a lookup wait for a connection, within the
  deadline, instead of failing); Cluster and Sentinel URIs are parsed by
  ``limits``, whose storages build redis-py's clients.
* :class:`Library` calls ``_admit.lua``: as a Redis Function (``FCALL``; the
  library is loaded with ``FUNCTION LOAD``, once, the first time the server
  does not know it), or, on a server without Functions (Redis < 7), through
  ``EVALSHA``/``EVAL``; one call, or a pipeline of calls.
* :func:`outages` names the exceptions that mean "the store cannot be
  reached": connection and timeout errors, nothing else.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Final, TypeAlias

from nirguard.errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "FUNCTION",
    "Call",
    "Library",
    "Reply",
    "open_redis",
    "outages",
]

#: A reply: a bulk string, an integer, nil, an error reply, or an array of replies.
Reply: TypeAlias = "bytes | int | Exception | list[Reply] | None"


@dataclass(frozen=True, slots=True)
class Call:
    """One call of the library: its keys and arguments, and the same arguments with the
    policy's text, sent instead when the server does not know the policy's digest."""

    keys: tuple[str, ...]
    args: tuple[str, ...]
    full: tuple[str, ...]


#: Connections per process in the default blocking pool.
DEFAULT_MAX_CONNECTIONS: Final = 64

#: The library: the records' formats, the policy's compiler, the decision (in that order).
BODY: Final = "\n".join(
    files("nirguard._redis").joinpath(name).read_text("utf-8")
    for name in ("_records.lua", "_policy.lua", "_admit.lua")
)
#: The library and function name carry the code's digest: two versions of nirguard
#: on one Redis (a rolling deploy) each find their own.
FUNCTION: Final = "nirguard_" + hashlib.sha256(BODY.encode("utf-8")).hexdigest()[:16]
LIBRARY: Final = f"#!lua name={FUNCTION}\n{BODY}\nredis.register_function('{FUNCTION}', main)\n"
SCRIPT: Final = f"{BODY}\nreturn main(KEYS, ARGV)\n"
SHA: Final = hashlib.sha1(SCRIPT.encode("utf-8")).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

_PLAIN: Final = ("redis", "rediss", "unix", "redis+unix")
_LIMITS: Final = ("redis+cluster", "redis+sentinel")
KEYS: Final = 4  # every call names four keys (see _admit.lua)


def outages() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the store cannot be reached" (and nothing else)."""
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
    """Timeouts bounded by the deadline, RESP2, no client retries, unless the caller says otherwise."""
    merged = dict(options)
    # RESP2: no HELLO or maintenance-notification handshake on every new connection.
    merged.setdefault("protocol", 2)
    # A stalled server is refused a little before the deadline (the rest is the guard's own).
    merged.setdefault("socket_timeout", deadline * 0.9)
    merged.setdefault("socket_connect_timeout", min(1.0, max(deadline * 0.9, 0.05)))
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
) -> tuple[Callable[[], Any], bool]:
    """A factory of redis-py clients for ``uri``, and whether it is a Cluster.

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
        return _plain(uri, opts, deadline), False
    return (lambda: _limits_storage(uri, opts).storage), scheme == "redis+cluster"


def _plain(uri: str, opts: dict[str, Any], deadline: float) -> Callable[[], Any]:
    def make() -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        pool_opts = dict(opts)
        pool_opts.setdefault("max_connections", DEFAULT_MAX_CONNECTIONS)
        pool_opts.setdefault("timeout", deadline)  # waiting for a connection counts in the deadline
        pool_opts.setdefault("retry", Retry(NoBackoff(), 0))
        url = uri.replace("redis+unix://", "unix://", 1)
        pool = redis.BlockingConnectionPool.from_url(url, **pool_opts)
        return redis.Redis(connection_pool=pool)

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


_POOLS: tuple[type, ...] = ()


def _pools() -> tuple[type, ...]:
    global _POOLS
    if not _POOLS:
        import redis

        _POOLS = (redis.BlockingConnectionPool,)
    return _POOLS


def _direct_pipeline(pool: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Many commands on a pooled connection: one send, the replies read from one buffer
    (a reply is the command's result, or the ``ResponseError`` it raised). Without
    redis-py's pipeline object, a batch costs the dispatcher thread a send and as few
    reads as the replies need, which matters when it shares the GIL with a busy loop."""
    from redis.exceptions import ResponseError

    connection = pool.get_connection()
    try:
        connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:
        connection.disconnect()  # a half-read reply must never reach the next caller
        raise
    finally:
        pool.release(connection)


def _direct(pool: Any, command: tuple[Any, ...]) -> Any:
    """One command on a pooled connection, without redis-py's per-command wrappers
    (retries are off anyway, and its observability hooks cost more than the call)."""
    from redis.exceptions import ResponseError

    (reply,) = _direct_pipeline(pool, [command])
    if isinstance(reply, ResponseError):
        raise reply
    return reply


def _missing(exc: BaseException) -> str | None:
    """``"function"`` when the server lacks our library, ``"command"`` when it lacks
    Functions altogether (Redis < 7), ``"script"`` when its script cache lacks our
    script, else ``None``."""
    message = str(exc).lower()
    if "function not found" in message:
        return "function"
    if "unknown command" in message and ("fcall" in message or "function" in message):
        return "command"
    # redis-py strips the NOSCRIPT code into NoScriptError; hiredis alone keeps it
    if message.startswith("noscript") or type(exc).__name__ == "NoScriptError":
        return "script"
    if message.startswith("nopolicy"):
        return "policy"
    return None


#: The command that loads what a server lacks, by what ``_missing`` says it lacks.
_LOADS: Final = {"function": ("FUNCTION", "LOAD", LIBRARY), "script": ("SCRIPT", "LOAD", SCRIPT)}


def _loaded(reply: Any) -> None:
    """Raise a load's error reply, unless another process loaded it first."""
    from redis.exceptions import ResponseError

    if isinstance(reply, ResponseError) and "already exists" not in str(reply).lower():
        raise reply


class Library:
    """Calls ``_admit.lua`` on a client: as a Function while the server has them,
    else as a script. Loads it once when missing (one load for many callers).

    Calls name their policy by digest; the first call a server cannot place is
    sent again with the policy itself (:attr:`policies`, digest -> text).
    """

    __slots__ = ("_load_lock", "functions", "policies")

    def __init__(self, *, functions: bool = True) -> None:
        self.functions = functions
        self.policies: dict[str, str] = {}
        self._load_lock = threading.Lock()

    def with_policy(self, args: Sequence[str]) -> list[str]:
        """``args`` with the policy's text as ARGV 8 (see ``_admit.lua``)."""
        keys, argv = list(args[:KEYS]), list(args[KEYS:])
        argv += [""] * (7 - len(argv))
        return [*keys, *argv[:7], self.policies.get(argv[2], "")]

    def _load(self, client: Any, kind: str) -> None:
        from redis.exceptions import ResponseError

        with self._load_lock:
            try:  # redis-py's own commands: on a Cluster they reach every primary
                if kind == "function":
                    client.function_load(LIBRARY)
                else:
                    client.script_load(SCRIPT)
            except ResponseError as exc:
                _loaded(exc)

    def _command(self, args: Sequence[str]) -> tuple[Any, ...]:
        if self.functions:
            return ("FCALL", FUNCTION, KEYS, *args)
        return ("EVALSHA", SHA, KEYS, *args)

    def _recovery(self, error: BaseException) -> str | None:
        """What an error reply asks for before the call is made again: ``"policy"``
        (send it with the policy), ``"function"`` or ``"script"`` (load that first),
        ``"retry"`` (a server without Functions: scripts from now on); ``None`` when
        the error is the call's own."""
        missing = _missing(error)
        if missing == "command":
            self.functions = False
            return "retry"
        return missing

    def call(self, client: Any, args: Sequence[str]) -> Any:
        """One call; the library is loaded first if the server does not know it."""
        from redis.exceptions import ResponseError

        send = _direct if isinstance(getattr(client, "connection_pool", None), _pools()) else None
        for _ in range(3):
            try:
                if send is not None:
                    return send(client.connection_pool, self._command(args))
                return client.execute_command(*self._command(args))
            except ResponseError as exc:
                need = self._recovery(exc)
                if need is None:
                    raise
                if need == "policy":
                    args = self.with_policy(args)
                elif need != "retry":
                    self._load(client, need)
        return client.execute_command(*self._command(args))

    async def acall(self, channel: Any, args: Sequence[str]) -> Any:
        """:meth:`call` on an event loop's :class:`~nirguard._redis.loop.Channel`."""
        from redis.exceptions import ResponseError

        for _ in range(3):
            reply = await channel.call(*self._command(args))
            if not isinstance(reply, ResponseError):
                return reply
            need = self._recovery(reply)
            if need is None:
                raise reply
            if need == "policy":
                args = self.with_policy(args)
            elif need != "retry":
                loaded = await channel.call(*_LOADS[need])
                if isinstance(loaded, ResponseError):
                    _loaded(loaded)
        reply = await channel.call(*self._command(args))
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def pipeline(self, client: Any, calls: Sequence[Sequence[str]]) -> list[Any]:
        """Many calls in one round trip (not a transaction: each call is atomic on its
        own); a reply is the call's result, or the exception it raised."""
        from redis.exceptions import ResponseError

        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        calls = list(calls)
        direct = isinstance(getattr(client, "connection_pool", None), _pools())
        for _ in range(3):
            if direct:
                results = _direct_pipeline(
                    client.connection_pool, [self._command(calls[i]) for i in todo]
                )
            else:
                pipe = client.pipeline(transaction=False)
                for i in todo:
                    pipe.execute_command(*self._command(calls[i]))
                results = pipe.execute(raise_on_error=False)
            retry = []
            recovered = False
            for i, result in zip(todo, results, strict=True):
                need = self._recovery(result) if isinstance(result, ResponseError) else None
                if need is None:
                    replies[i] = result
                    continue
                if need == "policy":
                    calls[i] = self.with_policy(calls[i])
                elif need != "retry" and not recovered:
                    self._load(client, need)
                    recovered = True
                retry.append(i)
            if not retry:
                return replies
            todo = retry
        for i in todo:
            replies[i] = ResponseError("nirguard: the library could not be loaded")
        return replies
