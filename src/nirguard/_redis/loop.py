"""The async path's calls to a plain Redis, made on the event loop itself.

One connection per event loop, an :class:`asyncio.Protocol`: every call made
during one turn of the loop is written in **one** ``write`` (a pipeline), and
replies are parsed (hiredis) and handed to their callers as they arrive, in
order. Nothing runs on another thread, so a busy portal pays no GIL hand-off
per batch (the dispatcher thread's cost under load: see :mod:`nirguard._redis.thread`).

**The deadline measures the store, not the loop.** A saturated event loop runs
its callbacks late; a timer that fired before the loop read a reply already
waiting in the socket would call a healthy store unavailable. So a call is
refused only when the store has been *silent*: a sweep runs every tenth of the
deadline, and fails the pending calls when (1) no byte arrived since the
previous sweep and (2) the oldest pending call was already older than 0.8 of
the deadline at that previous sweep. Between two sweeps the loop polls its
sockets at least once, so a reply that had arrived by the previous sweep has
been read by this one, on asyncio's loop and on uvloop alike: the oldest call
really waited more than 0.8 of the deadline for its reply. A paused server is
thus refused within about the deadline; a loop that is merely late never is.

A failed call closes the connection (a reply that comes later must never
reach the next caller); the next call opens another. A cancelled caller's
reply is read and dropped. A call whose reply is lost may have run on the
server: it consumed its counters and returned nothing, the only failure shape
the guard accepts.

Used for ``redis://`` and ``unix://`` URIs whose options it understands, when
hiredis is installed (the ``redis`` extra installs it); anything else (TLS,
Cluster, Sentinel, other connection options) goes through the dispatcher.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any, Final, cast

__all__ = ["Channel", "channel_params"]

#: A call is refused when the store has been silent for this share of the deadline.
SILENCE: Final = 0.8
#: Sweeps per deadline.
SWEEPS: Final = 10

#: Connection arguments (redis-py's names) the channel honours; any other one, or
#: another connection class, sends the async path through the dispatcher instead.
_KNOWN: Final = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "protocol",
        "client_name",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "retry",
        "himport_registry",
    }
)


def channel_params(pool: Any) -> dict[str, Any] | None:
    """The connection arguments of a redis-py pool the channel can serve, else ``None``."""
    try:
        import hiredis  # noqa: F401
        import redis
    except ModuleNotFoundError:
        return None
    if pool.connection_class not in (redis.Connection, redis.UnixDomainSocketConnection):
        return None
    params = dict(pool.connection_kwargs)
    if not set(params) <= _KNOWN or params.get("protocol", 2) not in (2, "2", None):
        return None
    return params


def _pack(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        else:
            data = str(arg).encode("ascii")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _errors() -> tuple[type[Exception], type[Exception], type[Exception]]:
    from redis.exceptions import ConnectionError as StoreConnectionError
    from redis.exceptions import ResponseError
    from redis.exceptions import TimeoutError as StoreTimeoutError

    return StoreConnectionError, StoreTimeoutError, ResponseError


class _Connection(asyncio.Protocol):
    """One socket: calls written once per turn of the loop, replies handed out in order,
    and the sweep that tells a silent store from a late loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        import hiredis

        self.loop = loop
        self.deadline = deadline
        self.errors = _errors()
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.closed: BaseException | None = None
        self._reader = hiredis.Reader(replyError=self.errors[2])
        self._outbox: list[bytes] = []
        self._flushing = False
        self._sweeping = False
        self._received = 0  # data_received calls so far: the sweep's sign of life
        self._seen = 0  # ... as the previous sweep saw it
        self._swept = 0.0  # when the previous sweep ran

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is not a subclass of asyncio.Transport)
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self._received += 1
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except Exception:  # hiredis.ProtocolError: the stream cannot be trusted any more
                self.fail(self.errors[0]("nirguard: the store sent a reply it could not parse"))
                return
            if reply is False:
                return
            if not self.pending:
                self.fail(self.errors[0]("nirguard: the store sent a reply nobody asked for"))
                return
            future, _ = self.pending.popleft()
            if not future.done():  # a cancelled caller's reply is dropped
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(self.errors[0]("nirguard: the connection to the store was lost"))

    # -- calls ----------------------------------------------------------------------------------

    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue one command; the future of its reply (an error reply is its result)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        if self.closed is not None:
            future.set_exception(self.closed)
            return future
        now = self.loop.time()
        self._outbox.append(_pack(args))
        self.pending.append((future, now))
        if not self._flushing:
            self._flushing = True
            self.loop.call_soon(self._flush)
        if not self._sweeping:
            self._sweeping = True
            self._seen, self._swept = self._received, now
            self.loop.call_later(self.deadline / SWEEPS, self._sweep)
        return future

    def _flush(self) -> None:
        self._flushing = False
        data, self._outbox = self._outbox, []
        if self.closed is None and self.transport is not None and data:
            self.transport.write(b"".join(data))

    def _sweep(self) -> None:
        self._sweeping = False
        if self.closed is not None or not self.pending:
            return
        now = self.loop.time()
        _, oldest = self.pending[0]
        if self._received == self._seen and self._swept - oldest > self.deadline * SILENCE:
            self.fail(self.errors[1]("nirguard: the store did not answer within the deadline"))
            return
        self._seen, self._swept = self._received, now
        self._sweeping = True
        self.loop.call_later(self.deadline / SWEEPS, self._sweep)

    def fail(self, error: BaseException) -> None:
        """Fail every pending call with ``error`` and close the socket for good."""
        if self.closed is None:
            self.closed = error
        self._outbox = []
        while self.pending:
            future, _ = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.close()


class Channel:
    """The calls of one event loop to one Redis server, on one connection at a time."""

    __slots__ = (
        "_connecting",
        "_deadline",
        "_errors",
        "_params",
        "_watch",
        "conn",
        "loop",
        "pid",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, params: dict[str, Any], deadline: float
    ) -> None:
        self.loop = loop
        self._params = params
        self._deadline = deadline
        self._errors = _errors()
        self.conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._watch: AsyncGenerator[None, None] | None = None
        self.pid = os.getpid()

    async def call(self, *args: Any) -> Any:
        """One command's reply (an error reply is returned as its exception, not raised)."""
        conn = self.conn
        if conn is None or conn.closed is not None:
            conn = await self._connect()
        return await conn.send(args)

    async def _connect(self) -> _Connection:
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _until_loop_ends(self) -> AsyncGenerator[None, None]:
        """Suspended for the loop's lifetime: ``asyncio.run`` (and uvicorn) close the
        loop's async generators before the loop, which runs :meth:`close` on it, so
        the socket is closed by its own loop instead of leaking when the loop goes."""
        try:
            yield
        finally:
            self.close()

    async def _open(self) -> _Connection:
        if self._watch is None:
            self._watch = self._until_loop_ends()
            await self._watch.__anext__()
        params = self._params
        timeout = params.get("socket_connect_timeout") or self._deadline
        connection_error = self._errors[0]

        def protocol() -> _Connection:
            return _Connection(self.loop, self._deadline)

        try:
            if params.get("path"):
                opened = self.loop.create_unix_connection(protocol, params["path"])
            else:
                host, port = params.get("host", "localhost"), int(params.get("port", 6379))
                opened = self.loop.create_connection(protocol, host, port)
            _, conn = await asyncio.wait_for(opened, timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise connection_error(
                f"nirguard: cannot connect to the store ({type(exc).__name__})"
            ) from None
        assert conn.transport is not None
        sock = conn.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if params.get("socket_keepalive"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        handshake: list[tuple[Any, ...]] = []
        if params.get("password"):
            user = params.get("username")
            handshake.append(
                ("AUTH", user, params["password"]) if user else ("AUTH", params["password"])
            )
        if params.get("client_name"):
            handshake.append(("CLIENT", "SETNAME", params["client_name"]))
        if params.get("db"):
            handshake.append(("SELECT", params["db"]))
        replies = await asyncio.gather(*(conn.send(command) for command in handshake))
        for reply in replies:
            if isinstance(reply, Exception):  # a refused login or database: say which, not why
                conn.fail(connection_error("nirguard: the store refused the connection's set-up"))
                raise connection_error(
                    f"nirguard: the store refused the connection's set-up ({type(reply).__name__})"
                )
        self.conn = conn
        return conn

    def close(self) -> None:
        """Close the connection (from the loop's thread, or once the loop has stopped)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.fail(self._errors[0]("nirguard: the guard was closed"))
