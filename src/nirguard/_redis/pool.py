"""The sync transport: the caller's thread talks to the store over a pooled socket.

One :class:`Pool` per server and process: at most ``max_connections`` sockets,
a caller waits for a free one within the deadline (a busy pool is not an
outage until the deadline passes). A call is one write (its commands and a fence,
:mod:`nirguard._redis.wire`) and reads until its replies and the fence are in.
**The deadline bounds the whole call**: every wait (a free socket, connecting,
sending, each read) gets what is left of it, so a server that dribbles its reply
a byte at a time is refused on time like a silent one.

A socket that failed, timed out, or held bytes nobody asked for is closed, never
reused. After a fork (gunicorn ``--preload``) the child drops its parent's
sockets without touching them and opens its own.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import weakref
from collections.abc import Sequence

from nirguard._redis.connect import Endpoint, open_socket
from nirguard._redis.outage import StoreUnavailable, classify
from nirguard._redis.wire import (
    Command,
    Reader,
    Reply,
    ReplyError,
    closed_after,
    fence,
    fenced,
    pack,
    reader,
)
from nirguard.errors import ConfigurationError

__all__ = ["Pool", "SyncNodes"]

_CHUNK = 65536


def _expired() -> StoreUnavailable:
    return StoreUnavailable("nirguard: the store did not answer within the deadline")


class _Socket:
    """One connection: a socket, its reader, and its count of writes (for the fences)."""

    __slots__ = ("__weakref__", "reader", "sock", "writes")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        weakref.finalize(self, sock.close)  # a pool dropped with its guard: closed, quietly
        self.reader: Reader = reader()
        self.writes = 0

    def stale(self) -> bool:
        """Bytes arrived that nobody asked for (or the server closed the connection)."""
        if self.reader.gets() is not False:
            return True
        sock = self.sock
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return True
        return bool(select.select([sock], [], [], 0)[0])

    def exchange(self, commands: Sequence[Command], deadline: float) -> list[Reply]:
        """Send ``commands`` in one write, and read their replies, all before ``deadline``.

        Raises:
            StoreUnavailable: the deadline passed, the connection broke, or the fence
                was not in place (the caller must close this socket).
        """
        self.writes += 1
        number = self.writes
        data = pack([*commands, fence(number)])
        sock, feed, gets = self.sock, self.reader.feed, self.reader.gets
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.0001))
            sock.sendall(data)
            replies: list[Reply] = []
            want = len(commands) + 1
            while len(replies) < want:
                reply = gets()
                if reply is not False:
                    replies.append(reply)
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _expired()
                sock.settimeout(left)
                chunk = sock.recv(_CHUNK)
                if not chunk:
                    raise closed_after(replies)
                feed(chunk)
        except TimeoutError:
            raise _expired() from None
        except OSError as exc:
            raise StoreUnavailable(
                f"nirguard: the connection was lost ({type(exc).__name__})"
            ) from None
        except (StoreUnavailable, ConfigurationError):
            raise
        except Exception as exc:  # hiredis.ProtocolError: the stream cannot be trusted
            raise StoreUnavailable(
                f"nirguard: the store sent what is not a reply ({type(exc).__name__})"
            ) from None
        return fenced(replies, number)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Pool:
    """The sockets of one process to one server."""

    __slots__ = ("_closed", "_free", "_idle", "_lock", "_pid", "endpoint", "size")

    def __init__(self, endpoint: Endpoint, size: int) -> None:
        self.endpoint = endpoint
        self.size = size
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._idle: list[_Socket] = []
        self._free = threading.BoundedSemaphore(size)
        self._closed = False

    def _after_fork(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._idle = []  # the parent's: never touched here
                self._free = threading.BoundedSemaphore(self.size)
                self._pid = os.getpid()

    def _open(self, deadline: float) -> _Socket:
        conn = _Socket(open_socket(self.endpoint, deadline - time.monotonic()))
        setup = self.endpoint.handshake()
        if setup:
            try:
                replies = conn.exchange(setup, deadline)
            except BaseException:
                conn.close()
                raise
            for reply in replies:
                if isinstance(reply, ReplyError):
                    conn.close()
                    raise classify(reply)
        return conn

    def run(self, commands: Sequence[Command], deadline: float) -> list[Reply]:
        """The replies of ``commands`` (error replies as values), sent in one write.

        Raises:
            StoreUnavailable: an outage (no reply before ``deadline``, a lost connection).
            ConfigurationError: the server refused the connection's set-up.
        """
        if self._pid != os.getpid():
            self._after_fork()
        free = self._free
        if not free.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise StoreUnavailable("nirguard: no connection to the store was free in time")
        try:
            conn = None
            while self._idle:
                try:
                    conn = self._idle.pop()
                except IndexError:
                    break
                if not conn.stale():
                    break
                conn.close()
                conn = None
            if conn is None:
                conn = self._open(deadline)
            try:
                replies = conn.exchange(commands, deadline)
            except BaseException:
                conn.close()
                raise
            if self._closed:
                conn.close()
            else:
                self._idle.append(conn)
            return replies
        finally:
            free.release()

    def close(self) -> None:
        """Close the idle sockets (a socket in use is closed by its caller's next error,
        or closed when it comes back, since the pool is then closed)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            for conn in idle:
                conn.close()


class SyncNodes:
    """The sync transport: a pool per server, made on first use."""

    __slots__ = ("_lock", "_pools", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._pools: dict[Endpoint, Pool] = {}
        self._lock = threading.Lock()

    def run(self, node: Endpoint, commands: Sequence[Command], deadline: float) -> list[Reply]:
        """``commands`` on ``node``, before ``deadline`` (see :meth:`Pool.run`)."""
        pool = self._pools.get(node)
        if pool is None:
            with self._lock:
                pool = self._pools.setdefault(node, Pool(node, self.size))
        return pool.run(commands, deadline)

    def close(self) -> None:
        """Close every idle socket (a later call opens new ones)."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
