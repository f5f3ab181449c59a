"""Real Redis components for the tests and the benchmarks, no mocks.

* :class:`RedisServer`: a private ``redis-server`` in a temporary directory, on a
  free port, that a test may **pause** (SIGSTOP: it keeps accepting TCP
  connections but answers nothing, like a stalled or swapping server) and resume.
* :class:`RedisCluster`: three such servers with ``--cluster-enabled yes`` joined
  by ``redis-cli --cluster create``; :attr:`RedisCluster.url` is the
  ``redis+cluster://host:port,host:port,...`` form ``limits`` wants.
* :class:`TcpProxy`: a TCP proxy in front of any server that counts what the
  client sends (commands, parsed from the RESP stream, and round trips) and can
  **cut** connections: all of them now, at the n-th command from now (before the
  server sees it, or after it ran with its reply lost), or at random; it can also
  delay replies (a slow store), **dribble** them a byte at a time (a server whose
  every byte resets a socket timeout), **duplicate** them (a reply nobody asked for,
  sent at once or a little later, when the next caller waits), and refuse new
  connections.

Used by ``tests/conftest.py`` (fixtures ``redis_cluster_url``, ``private_redis``,
``redis_proxy``) and by ``benchmarks/``. Everything started here is stopped by
``stop()`` / the context managers, also when a test fails half way.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "Counts",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "TcpProxy",
    "free_port",
    "missing_redis_binaries",
    "redis_url_via",
]

_LOCAL = "127.0.0.1"


def missing_redis_binaries(cluster: bool = False) -> str | None:
    """Why a private server (or cluster) cannot be started here, or ``None``."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    if cluster and shutil.which("redis-cli") is None:
        return "redis-cli is not installed (apt-get install redis-tools)"
    return None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((_LOCAL, port))
        except OSError:
            return False
    return True


def free_port(*, cluster_bus: bool = False) -> int:
    """A port free on 127.0.0.1. With ``cluster_bus``, port + 10000 is free too and both
    lie below the kernel's ephemeral range, so no outgoing connection takes them."""
    if not cluster_bus:
        with socket.socket() as sock:
            sock.bind((_LOCAL, 0))
            return int(sock.getsockname()[1])
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, 22700)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _ping(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((_LOCAL, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _answers_as(port: int, pid: int) -> bool:
    """Whether the server answering on ``port`` is the process ``pid`` (not a neighbour's)."""
    try:
        info = _command(port, "INFO", "server", timeout=0.5)
    except (OSError, RuntimeError, ValueError):  # not listening yet, or still loading
        return False
    return f"process_id:{pid}\r\n" in info


def _command(port: int, *args: str, timeout: float = 2.0) -> str:
    """One command through redis-cli-free raw RESP; the reply as text (enough for INFO)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection((_LOCAL, port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            if data[:1] in (b"+", b"-", b":") and data.endswith(b"\r\n"):
                break
            if data[:1] == b"$":
                head, _, rest = data.partition(b"\r\n")
                if int(head[1:]) < 0 or len(rest) >= int(head[1:]) + 2:
                    break
    if data[:1] == b"$":
        return data.partition(b"\r\n")[2][:-2].decode()
    if data[:1] == b"-":
        raise RuntimeError(f"redis error: {data[1:].decode().strip()}")
    return data[1:].decode().strip()


class RedisServer:
    """A private ``redis-server`` (no persistence) on a free port, in its own directory.

    >>> with RedisServer() as server:  # doctest: +SKIP
    ...     with server.paused():
    ...         ...  # every command now hangs until resumed
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        directory: str | os.PathLike[str] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self._own_port = port is None
        self.port = port if port is not None else free_port()
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="nirguard-redis-"))
        self._extra = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("server not started")
        return self.process.pid

    def url(self, db: int = 0) -> str:
        return f"redis://{_LOCAL}:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers, as itself.

        A free port is only free when looked at: another xdist worker's server (or an outgoing
        connection) may take it before this one binds it. The server that answers must then be
        this process (INFO's process_id), never a neighbour on the same port (its test would
        share this one's keys, FLUSH and passwords); a port found taken is replaced by another.
        """
        for _ in range(20 if self._own_port else 1):
            if self._launch(timeout):
                return self
            self.port = free_port()
        raise RuntimeError(f"redis-server on port {self.port} did not start: port in use")

    def _launch(self, timeout: float) -> bool:
        """True once this server answers; False when its own port was taken by another."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(missing_redis_binaries())
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                _LOCAL,
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / f"redis-{self.port}.log"),
                *self._extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _answers_as(self.port, self.process.pid):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.directory / f"redis-{self.port}.log"
                tail = log.read_text()[-500:] if log.exists() else ""
                if self._own_port and "already in use" in tail:
                    self.stop(keep_directory=True)
                    return False
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start: {tail}")
            time.sleep(0.02)
        return True

    def command(self, *args: str) -> str:
        """Send one command (plain text arguments) and return the reply as text."""
        return _command(self.port, *args)

    def info(self, section: str = "default") -> dict[str, str]:
        text = self.command("INFO", section)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value for key, value in pairs}

    def info_cluster(self) -> dict[str, str]:
        text = self.command("CLUSTER", "INFO")
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def pause(self) -> None:
        """SIGSTOP: the server keeps accepting connections (the kernel does) but answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[RedisServer]:
        self.pause()
        try:
            yield self
        finally:
            self.resume()

    def stop(self, *, keep_directory: bool = False) -> None:
        process, self.process = self.process, None
        if process is not None:
            if self._paused:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_dir and not keep_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start() if self.process is None else self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class RedisCluster:
    """Three (or more) cluster-enabled masters, no replicas, joined and checked ``ok``."""

    def __init__(self, masters: int = 3) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.directory = Path(tempfile.mkdtemp(prefix="nirguard-cluster-"))
        self.nodes: list[RedisServer] = []
        self._masters = masters

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`` (limits' RedisClusterStorage)."""
        return "redis+cluster://" + ",".join(f"{_LOCAL}:{node.port}" for node in self.nodes)

    def start(self, timeout: float = 30.0) -> RedisCluster:
        why = missing_redis_binaries(cluster=True)
        if why is not None:
            raise RuntimeError(why)
        try:
            for _ in range(self._masters):
                port = free_port(cluster_bus=True)
                node = RedisServer(
                    port=port,
                    directory=self.directory,
                    extra_args=(
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        f"nodes-{port}.conf",
                        "--cluster-node-timeout",
                        "5000",
                    ),
                )
                self.nodes.append(node)
                node.start()
            created = subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"{_LOCAL}:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            if created.returncode != 0:
                raise RuntimeError(
                    "redis-cli --cluster create failed: " + created.stdout.decode()[-500:]
                )
            self._wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        want = str(len(self.nodes))
        while True:
            infos = [node.info_cluster() for node in self.nodes]
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_slots_ok") == "16384"
                and info.get("cluster_known_nodes") == want
                for info in infos
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ok after {timeout} s: {infos}")
            time.sleep(0.1)

    def node_for_key(self, key: str) -> RedisServer:
        """The master that owns ``key``'s hash slot now (e.g. to pause just that one)."""
        slot = int(self.nodes[0].command("CLUSTER", "KEYSLOT", key))
        by_port = {node.port: node for node in self.nodes}
        for line in self.nodes[0].command("CLUSTER", "NODES").splitlines():
            parts = line.split()
            port = int(parts[1].split("@")[0].rsplit(":", 1)[1])
            for spec in parts[8:]:
                low, _, high = spec.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return by_port[port]
        raise LookupError("no master owns that slot")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        return self.start() if not self.nodes else self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def redis_url_via(url: str, port: int, host: str = _LOCAL) -> str:
    """``url`` (``redis://[auth@]host:port/db``) pointed at ``host:port`` instead."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@{host}:{port}" if auth else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- the proxy --------------------------------------------------------------------------------


@dataclass
class Counts:
    """What clients sent through a :class:`TcpProxy` since the last reset."""

    commands: int = 0  #: RESP commands (a pipeline of 5 is 5)
    round_trips: int = 0  #: client->server flights answered by the server (a pipeline is 1)
    connections: int = 0  #: connections accepted
    names: Counter[str] = field(default_factory=Counter)  #: commands by upper-cased name

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.commands - other.commands,
            self.round_trips - other.round_trips,
            self.connections - other.connections,
            self.names - other.names,
        )


class _RespCommands:
    """Splits a client->server byte stream into whole commands (RESP arrays or inline)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[bytes, str]]:
        """Every complete command now buffered, as (raw bytes, upper-cased name)."""
        self._buf += data
        out: list[tuple[bytes, str]] = []
        while True:
            item = self._one()
            if item is None:
                return out
            out.append(item)

    def rest(self) -> bytes:
        return self._buf

    def _one(self) -> tuple[bytes, str] | None:
        buf = self._buf
        if not buf:
            return None
        if buf[:1] != b"*":  # inline command (redis-cli, telnet)
            end = buf.find(b"\n")
            if end < 0:
                return None
            raw, self._buf = buf[: end + 1], buf[end + 1 :]
            words = raw.split()
            return raw, (words[0].decode("latin-1").upper() if words else "")
        end = buf.find(b"\r\n")
        if end < 0:
            return None
        count = int(buf[1:end])
        pos = end + 2
        name = ""
        for index in range(max(count, 0)):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            size = int(buf[pos + 1 : end])
            start = end + 2
            if len(buf) < start + size + 2:
                return None
            if index == 0:
                name = buf[start : start + size].decode("latin-1").upper()
            pos = start + size + 2
        raw, self._buf = buf[:pos], buf[pos:]
        return raw, name


class _Link:
    """One proxied connection: client socket, upstream socket, and its state."""

    __slots__ = ("awaiting_reply", "client", "closed", "drop_reply", "send_lock", "upstream")

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.send_lock = threading.Lock()
        self.upstream = upstream
        self.awaiting_reply = False
        self.drop_reply = False
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                # RST, not FIN: the peer sees "connection reset", as after a network cut.
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


CutWhen = Literal["request", "reply"]


class TcpProxy:
    """A counting, cutting TCP proxy in front of ``upstream`` (host, port). Threads inside:
    usable from sync and asyncio code alike.

    Cuts reset both sides of the connection (the client sees ``ConnectionError``):

    * ``cut_all()``: every open connection, now;
    * ``cut_at(n, when="request")``: the connection carrying the n-th command from now
      (1 = the next), before the server sees that command;
    * ``cut_at(n, when="reply")``: the server runs the n-th command, its reply is lost
      (the failure shape "the script ran, the client never heard");
    * ``cut_randomly(p, when=...)``: each command has probability ``p`` of being cut
      (``when="either"`` picks request or reply at random), from a seeded RNG;
    * ``delay = seconds``: every reply is held that long (a slow store);
    * ``dribble = seconds``: replies are sent one byte at a time, that long apart;
    * ``duplicate_randomly(p, later=s)``: each chunk of replies is sent twice with
      probability ``p`` (the copy ``s`` seconds later: it then reaches the client while
      the next call waits for its own reply); :attr:`duplicates` counts them;
    * ``refuse = True``: new connections are accepted and reset at once.
    """

    def __init__(self, upstream: tuple[str, int], *, seed: int | None = 0) -> None:
        self.upstream = upstream
        self.delay = 0.0
        self.dribble = 0.0
        self.refuse = False
        self.duplicates = 0  #: reply chunks sent twice so far
        self._dup_p = 0.0
        self._dup_later = 0.0
        self.cuts = 0  #: connections cut so far (by any rule)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._counts = Counts()
        self._links: set[_Link] = set()
        self._cut_countdown: int | None = None
        self._cut_when: CutWhen = "request"
        self._cut_p = 0.0
        self._cut_random_when: CutWhen | Literal["either"] = "request"
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # control --------------------------------------------------------------------------------

    def url(self, redis_url: str) -> str:
        """``redis_url`` pointed at this proxy (same scheme, auth and db)."""
        return redis_url_via(redis_url, self.port)

    def counts(self) -> Counts:
        with self._lock:
            c = self._counts
            return Counts(c.commands, c.round_trips, c.connections, Counter(c.names))

    def reset_counts(self) -> None:
        with self._lock:
            self._counts = Counts()

    def cut_all(self) -> int:
        """Reset every open connection; how many were cut."""
        with self._lock:
            links = list(self._links)
            self.cuts += len(links)
        for link in links:
            link.close()
        return len(links)

    def cut_at(self, n: int, when: CutWhen = "request") -> None:
        if n < 1:
            raise ValueError("n counts from 1 (the next command)")
        with self._lock:
            self._cut_countdown = n
            self._cut_when = when

    def cut_randomly(self, p: float, when: CutWhen | Literal["either"] = "either") -> None:
        with self._lock:
            self._cut_p = p
            self._cut_random_when = when

    def duplicate_randomly(self, p: float, later: float = 0.0) -> None:
        with self._lock:
            self._dup_p = p
            self._dup_later = later

    def stop_cutting(self) -> None:
        with self._lock:
            self._cut_countdown = None
            self._cut_p = 0.0
            self._dup_p = 0.0

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((_LOCAL, 0))
        listener.listen(512)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        if self._thread is not None:
            self._thread.join(2)

    def __enter__(self) -> TcpProxy:
        return self.start() if self._listener is None else self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # the pumps ------------------------------------------------------------------------------

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.refuse:
                _Link(client, socket.socket()).close()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _Link(client, socket.socket()).close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, upstream)
            with self._lock:
                self._links.add(link)
                self._counts.connections += 1
            threading.Thread(target=self._requests, args=(link,), daemon=True).start()
            threading.Thread(target=self._replies, args=(link,), daemon=True).start()

    def _decide_cut(self) -> CutWhen | None:
        """Under the lock: whether the command being forwarded is to be cut, and how."""
        if self._cut_countdown is not None:
            self._cut_countdown -= 1
            if self._cut_countdown == 0:
                self._cut_countdown = None
                return self._cut_when
        if self._cut_p and self._rng.random() < self._cut_p:
            when = self._cut_random_when
            if when == "either":
                return "request" if self._rng.random() < 0.5 else "reply"
            return when
        return None

    def _requests(self, link: _Link) -> None:
        parser = _RespCommands()
        try:
            while True:
                data = link.client.recv(65536)
                if not data:
                    break
                commands = parser.feed(data)
                forward = b""
                cut: CutWhen | None = None
                with self._lock:
                    if commands and not link.awaiting_reply:
                        self._counts.round_trips += 1
                    if commands:
                        link.awaiting_reply = True
                    for raw, name in commands:
                        self._counts.commands += 1
                        self._counts.names[name] += 1
                        cut = self._decide_cut()
                        if cut == "request":
                            break
                        forward += raw
                        if cut == "reply":
                            link.drop_reply = True
                            break
                    if cut is not None:
                        self.cuts += 1
                if forward:
                    link.upstream.sendall(forward)
                if cut == "request":
                    break
                if cut == "reply":
                    continue  # the reply pump cuts when the reply comes back
        except OSError:
            pass
        link.close()
        with self._lock:
            self._links.discard(link)

    def _send(self, link: _Link, data: bytes) -> None:
        with link.send_lock:
            if self.dribble:
                for i in range(len(data)):
                    link.client.sendall(data[i : i + 1])
                    time.sleep(self.dribble)
            else:
                link.client.sendall(data)

    def _send_later(self, link: _Link, data: bytes, delay: float) -> None:
        def send() -> None:
            time.sleep(delay)
            with contextlib.suppress(OSError):
                self._send(link, data)

        threading.Thread(target=send, daemon=True).start()

    def _replies(self, link: _Link) -> None:
        try:
            while True:
                data = link.upstream.recv(65536)
                if not data:
                    break
                if link.drop_reply:
                    break
                if self.delay:
                    time.sleep(self.delay)
                with self._lock:
                    link.awaiting_reply = False
                    twice = bool(self._dup_p) and self._rng.random() < self._dup_p
                    later = self._dup_later
                    if twice:
                        self.duplicates += 1
                self._send(link, data)
                if twice and later:
                    self._send_later(link, data, later)
                elif twice:
                    self._send(link, data)
        except OSError:
            pass
        link.close()
        with self._lock:
            self._links.discard(link)


class RedisSentinel:
    """One ``redis-server --sentinel`` watching ``primary`` under ``service``."""

    def __init__(self, primary: RedisServer, service: str = "mymaster") -> None:
        self.primary = primary
        self.service = service
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="nirguard-sentinel-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://{_LOCAL}:{self.port}/{self.service}"

    def start(self, timeout: float = 10.0) -> RedisSentinel:
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.port}\nbind {_LOCAL}\ndir {self.directory}\n"
            f"sentinel monitor {self.service} {_LOCAL} {self.primary.port} 1\n"
        )
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(missing_redis_binaries())
        self.process = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis sentinel did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            process.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
