"""Storage URIs and options -> where and how to connect (no I/O but the sync socket).

Everything is checked when the guard is made: an unknown scheme or option, a
malformed address, a TLS file that cannot be read raise
:class:`~nirguard.ConfigurationError` at once (messages never hold the URI: it
may hold a password). What can only be seen by connecting (a refused login, a
certificate that fails verification) is a :class:`~nirguard.ConfigurationError`
at the first connection, never an outage (:mod:`nirguard._redis.outage`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

from nirguard._redis.outage import connect_error
from nirguard._redis.wire import Command
from nirguard.errors import ConfigurationError

__all__ = ["DEFAULT_MAX_CONNECTIONS", "Endpoint", "Target", "open_socket", "parse"]

#: Connections per process and per server in the sync pool.
DEFAULT_MAX_CONNECTIONS: Final = 64

_SCHEMES: Final = {
    "redis": "single",
    "rediss": "single",
    "unix": "single",
    "redis+unix": "single",
    "redis+cluster": "cluster",
    "rediss+cluster": "cluster",
    "redis+sentinel": "sentinel",
    "rediss+sentinel": "sentinel",
}
_REPLACED: Final = ("timeout", "retry", "retry_on_timeout")
#: Accepted for compatibility, and not needed: every call checks its connection.
_IGNORED: Final = ("health_check_interval",)
#: The largest number an option takes (a timeout of a day is no deadline at all).
_HIGH: Final = 86_400.0
#: What Redis accepts in a client name (CLIENT SETNAME): printable ASCII, no space.
_CLIENT_NAME: Final = re.compile("[!-~]{1,256}")
_CERT_REQS: Final = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One server and how to talk to it (the password never shows in a repr)."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    client_name: str | None = None
    tls: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    connect_timeout: float | None = None
    keepalive: bool = False

    def at(self, host: str, port: int) -> Endpoint:
        """The same settings for another server (a Cluster node, a Sentinel's primary)."""
        return dataclasses.replace(self, host=host, port=port, path=None)

    def handshake(self) -> list[Command]:
        """What a new connection sends before any call: login, name, database."""
        out: list[Command] = []
        if self.password:
            auth = ("AUTH", self.username, self.password) if self.username else None
            out.append(auth or ("AUTH", self.password))
        if self.client_name:
            out.append(("CLIENT", "SETNAME", self.client_name))
        if self.db:
            out.append(("SELECT", str(self.db)))
        return out


@dataclass(frozen=True, slots=True)
class Target:
    """A deployment: one server, a Cluster's seed nodes, or Sentinels and a service."""

    kind: str  # "single", "cluster" or "sentinel"
    nodes: tuple[Endpoint, ...]
    service: str = ""
    #: Template of the primary's settings (Sentinel): its address comes from the Sentinels.
    primary: Endpoint | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: ``socket_timeout``: the store's calls get this long instead of the guard's deadline.
    timeout: float | None = None


def _fail(message: str) -> ConfigurationError:
    return ConfigurationError(f"nirguard: {message}")


def _options(query: str, options: Mapping[str, object]) -> dict[str, object]:
    merged: dict[str, object] = dict(parse_qsl(query))
    merged.update(options)
    for name in merged:
        if name in _REPLACED:
            raise _fail(
                f"storage option {name!r} is not used: LookupGuard(deadline=...) bounds every "
                "call, and no call is retried"
            )
    return merged


def _bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    raise _fail(f"storage option {name!r} must be true or false")


def _number(
    name: str, value: object, kind: type[int] | type[float], low: float, high: float = _HIGH
) -> float:
    """``value`` as a ``kind`` within ``[low, high]``: NaN, infinities and text are refused here,
    when the guard is made (NaN passed every comparison and failed each call as an outage, so
    ``fail_open`` let every lookup through; an infinite timeout raised ``OverflowError``)."""
    try:
        number = kind(value)  # type: ignore[call-overload,arg-type]
    except (TypeError, ValueError, OverflowError):
        number = math.nan
    if isinstance(value, bool) or not low <= number <= high:
        shown = [str(int(x)) if float(x).is_integer() else repr(x) for x in (low, high)]
        raise _fail(f"storage option {name!r} must be a number from {shown[0]} to {shown[1]}")
    return number


def _tls(opts: dict[str, object]) -> ssl.SSLContext:
    reqs = opts.pop("ssl_cert_reqs", "required")
    if isinstance(reqs, str):
        if reqs.lower() not in _CERT_REQS:
            raise _fail("storage option 'ssl_cert_reqs' must be required, optional or none")
        reqs = _CERT_REQS[reqs.lower()]
    context = ssl.create_default_context()
    check = _bool("ssl_check_hostname", opts.pop("ssl_check_hostname", True))
    context.check_hostname = check and reqs != ssl.CERT_NONE
    context.verify_mode = ssl.VerifyMode(int(reqs))  # type: ignore[call-overload]
    try:
        cafile, capath = opts.pop("ssl_ca_certs", None), opts.pop("ssl_ca_path", None)
        cadata = opts.pop("ssl_ca_data", None)
        if cafile or capath or cadata:
            context.load_verify_locations(cafile, capath, cadata)  # type: ignore[arg-type]
        certfile = opts.pop("ssl_certfile", None)
        keyfile, password = opts.pop("ssl_keyfile", None), opts.pop("ssl_password", None)
        if certfile:
            context.load_cert_chain(certfile, keyfile, password)  # type: ignore[arg-type]
        ciphers = opts.pop("ssl_ciphers", None)
        if ciphers:
            context.set_ciphers(str(ciphers))
        minimum = opts.pop("ssl_min_version", None)
        if minimum is not None:
            context.minimum_version = ssl.TLSVersion(int(minimum))  # type: ignore[call-overload]
    except (OSError, ssl.SSLError, ValueError, TypeError) as exc:
        raise _fail(f"the TLS settings cannot be used ({type(exc).__name__})") from None
    return context


def _hosts(netloc: str, scheme: str) -> list[tuple[str, int]]:
    out = []
    for part in netloc.split(","):
        if not part:
            continue
        host, _, port = part.rpartition(":") if not part.endswith("]") else (part, "", "")
        if not host or (host.startswith("[") != host.endswith("]")):
            host, port = part, ""
        host = host.strip("[]")
        if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
            raise _fail(f"a {scheme}:// address is malformed")
        out.append((host, int(port) if port else 6379))
    if not out:
        raise _fail(f"a {scheme}:// URI names no server")
    return out


def _endpoint(opts: dict[str, object], **base: object) -> Endpoint:
    kwargs: dict[str, object] = dict(base)
    for name in ("username", "password", "client_name"):
        value = opts.pop(name, None)
        if value is not None:
            kwargs[name] = str(value)
    client_name = kwargs.get("client_name")
    if client_name is not None and not _CLIENT_NAME.fullmatch(str(client_name)):
        raise _fail("storage option 'client_name' must be printable ASCII without spaces")
    if "db" in opts:
        kwargs["db"] = int(_number("db", opts.pop("db"), int, 0, 2**31 - 1))
    if "socket_connect_timeout" in opts:
        value = opts.pop("socket_connect_timeout")
        kwargs["connect_timeout"] = _number("socket_connect_timeout", value, float, 0.001)
    if "socket_keepalive" in opts:
        kwargs["keepalive"] = _bool("socket_keepalive", opts.pop("socket_keepalive"))
    return Endpoint(**kwargs)  # type: ignore[arg-type]


def _tls_of(scheme: str, opts: dict[str, object]) -> ssl.SSLContext | None:
    """The TLS context the scheme and the ``ssl*`` options ask for (they are consumed)."""
    tls = scheme.startswith("rediss") or _bool("ssl", opts.pop("ssl", False))
    tls_opts = {k: opts.pop(k) for k in list(opts) if k.startswith("ssl_")}
    context = _tls(tls_opts) if tls else None
    if tls_opts:
        name = sorted(tls_opts)[0]
        raise _fail(
            f"storage option {name!r} is not known"
            if tls
            else f"storage option {name!r} needs TLS (rediss:// or ssl=True)"
        )
    return context


def _sentinels(
    options: object, primary: Endpoint, nodes: tuple[Endpoint, ...]
) -> tuple[Endpoint, ...]:
    """The Sentinels: the primary's login unless ``sentinel_kwargs`` says otherwise."""
    if not isinstance(options, Mapping):
        raise _fail("storage option 'sentinel_kwargs' must be a mapping")
    extra = dict(options)
    sentinel = dataclasses.replace(_endpoint(extra, **_auth(primary)), db=0, client_name=None)
    if extra:
        raise _fail(f"sentinel option {sorted(extra)[0]!r} is not known")
    return tuple(sentinel.at(n.host, n.port) for n in nodes)


def parse(uri: str, options: Mapping[str, object] | None = None) -> Target:
    """Where ``uri`` and ``options`` (redis-py's names) say to connect.

    Raises:
        ConfigurationError: an unknown scheme or option, a malformed address, TLS
            settings that cannot be used (never with the URI in the message).
    """
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    kind = _SCHEMES.get(scheme)
    if kind is None:
        raise _fail(
            f"storage scheme {scheme!r} is not supported: use memory://, redis://, rediss://, "
            "unix://, redis+cluster:// or redis+sentinel://"
        )
    parts = urlsplit(uri.replace("redis+unix://", "unix://", 1))
    opts = _options(parts.query, options or {})
    userinfo, _, netloc = parts.netloc.rpartition("@")
    if userinfo:
        user, _, password = userinfo.partition(":")
        opts.setdefault("username", unquote(user) or None)
        opts.setdefault("password", unquote(password) or None)
    context = _tls_of(scheme, opts)
    max_connections = int(
        _number("max_connections", opts.pop("max_connections", 64), int, 1, 65_536)
    )
    timeout = opts.pop("socket_timeout", None)
    if timeout is not None:
        timeout = _number("socket_timeout", timeout, float, 0.001)
    for name in _IGNORED:
        opts.pop(name, None)
    protocol = opts.pop("protocol", 2)
    if str(protocol) != "2":
        raise _fail("storage option 'protocol' can only be 2 (RESP2)")
    service = str(opts.pop("service_name", "") or "")
    sentinel_opts = opts.pop("sentinel_kwargs", None) or {}
    if _bool("use_replicas", opts.pop("use_replicas", False)):
        raise _fail("use_replicas cannot be used: decisions must read where they write")
    path = parts.path
    if kind == "single" and scheme in ("unix", "redis+unix"):
        endpoint = _endpoint(opts, path=path, tls=context)
        nodes: tuple[Endpoint, ...] = (endpoint,)
    else:
        hosts = _hosts(netloc, scheme)
        if kind == "single" and path.strip("/"):
            opts.setdefault("db", path.strip("/"))
        if kind == "sentinel":
            service = service or path.strip("/")
            if not service:
                raise _fail("a redis+sentinel:// URI needs the service name as its path")
        endpoint = _endpoint(opts, host=hosts[0][0], port=hosts[0][1], tls=context)
        nodes = tuple(endpoint.at(host, port) for host, port in hosts)
    if opts:
        raise _fail(f"storage option {sorted(opts)[0]!r} is not known")
    if kind == "sentinel":
        sentinels = _sentinels(sentinel_opts, endpoint, nodes)
        return Target("sentinel", sentinels, service, endpoint, max_connections, timeout)
    if kind == "cluster" and endpoint.db:
        raise _fail("a Redis Cluster has only database 0")
    return Target(kind, nodes, max_connections=max_connections, timeout=timeout)


def _auth(endpoint: Endpoint) -> dict[str, object]:
    """The primary's settings that Sentinels share unless ``sentinel_kwargs`` says otherwise."""
    return {
        "username": endpoint.username,
        "password": endpoint.password,
        "tls": endpoint.tls,
        "connect_timeout": endpoint.connect_timeout,
        "keepalive": endpoint.keepalive,
    }


def open_socket(endpoint: Endpoint, timeout: float) -> socket.socket:
    """A connected socket (TLS done), or the failure as the outage rule says.

    Raises:
        StoreUnavailable: the server cannot be reached.
        ConfigurationError: a name that does not resolve, a TLS failure.
    """
    timeout = max(0.001, min(timeout, endpoint.connect_timeout or timeout))
    family = socket.AF_UNIX if endpoint.path else socket.AF_INET
    sock: socket.socket | None = None
    try:
        if endpoint.path:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(endpoint.path)
        else:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.keepalive:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if endpoint.tls is not None:
            name = endpoint.host if endpoint.tls.check_hostname else None
            sock = endpoint.tls.wrap_socket(sock, server_hostname=name)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise connect_error(exc) from None
    return sock
