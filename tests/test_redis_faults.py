"""Every failure of issue 20, against a real server (and a proxy in front of it that
dribbles or duplicates replies): refused within the deadline on every path (sync, async
on asyncio and on uvloop), outages and misconfigurations told apart, and ``fail_open``
never applying to a misconfiguration. The Cluster's cases are in test_redis_cluster.py."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nirguard import (
    ConfigurationError,
    GuardUnavailable,
    LookupDenied,
    LookupGuard,
    PractitionerLocked,
    Pseudonymiser,
    QuotaPolicy,
)
from nirguard.testing import NIRGenerator
from tests.guard_helpers import KEY
from tests.redis_tools import RedisSentinel, RedisServer, TcpProxy, free_port

NIRS = NIRGenerator(seed=2020).many(120)
DEADLINE = 0.3
SLACK = 0.3  # scheduling on a busy 2-core host


def _uvloop_run(main: Any) -> Any:
    uvloop = pytest.importorskip("uvloop")
    return uvloop.run(main)


RUNNERS: dict[str, Callable[[Any], Any]] = {"asyncio": asyncio.run, "uvloop": _uvloop_run}
PATHS = pytest.mark.parametrize("path", ["sync", "asyncio", "uvloop"])


def guard_on(url: str, **kwargs: Any) -> LookupGuard:
    kwargs.setdefault("pseudonymiser", Pseudonymiser(KEY, purpose="guard"))
    kwargs.setdefault("key_prefix", "faults")
    kwargs.setdefault("deadline", DEADLINE)
    policy = kwargs.pop("policy", QuotaPolicy.only(lookups="1000/hour"))
    return LookupGuard(policy, storage=url, **kwargs)


def look(guard: LookupGuard, who: str, value: str, path: str) -> str:
    """One lookup on ``path``: its outcome (``None`` outcome = let through unguarded)."""
    if path == "sync":
        with guard.lookup(who, value) as lookup:
            return str(lookup.outcome)

    async def one() -> str:
        try:
            async with guard.lookup(who, value) as lookup:
                return str(lookup.outcome)
        finally:
            await guard.aclose()

    return str(RUNNERS[path](one()))


def timed(call: Callable[[], object], error: type[BaseException]) -> float:
    start = time.monotonic()
    with pytest.raises(error):
        call()
    return time.monotonic() - start


# -- a server that dribbles its replies --------------------------------------------------------


@PATHS
def test_a_server_that_dribbles_is_refused_within_the_deadline(
    private_redis: RedisServer, redis_proxy: TcpProxy, path: str
) -> None:
    """Before: a sync lookup waited 21.4 s (every byte reset the socket timeout)."""
    guard = guard_on(redis_proxy.url(private_redis.url()))
    assert look(guard, "dr", NIRS[0], path) == "allowed"  # connected, library loaded
    redis_proxy.dribble = 0.02  # one byte every 20 ms: never silent for a socket timeout
    took = [timed(lambda v=v: look(guard, "dr", v, path), GuardUnavailable) for v in NIRS[1:3]]
    redis_proxy.dribble = 0.0
    assert max(took) < DEADLINE + SLACK, took
    assert look(guard, "dr", NIRS[3], path) == "allowed"  # a new connection: decided again
    guard.close()


# -- replies nobody asked for --------------------------------------------------------------------


@PATHS
@pytest.mark.parametrize("later", [0.0, 0.002], ids=["at-once", "while-the-next-waits"])
def test_duplicated_replies_never_reach_another_caller(
    private_redis: RedisServer, redis_proxy: TcpProxy, path: str, later: float
) -> None:
    """A locked account and a free one, looked up in turn while the proxy duplicates
    replies: the locked one is never "allowed", the free one never "locked". Before: one
    unasked-for reply shifted every later reply (locked accounts got "allowed")."""
    policy = QuotaPolicy.only(lookups="1000/hour", distinct_patients="1/day", break_glass=None)
    guard = guard_on(redis_proxy.url(private_redis.url()), policy=policy, deadline=1.0)
    look(guard, "locked", NIRS[0], path)
    with pytest.raises(LookupDenied):
        look(guard, "locked", NIRS[1], path)  # past its quota: locked out from now on
    redis_proxy.duplicate_randomly(0.3, later=later)
    seen: dict[str, list[str]] = {"locked": [], "free": []}
    for i in range(24):
        who = "locked" if i % 2 else "free"
        value = NIRS[2 + i] if who == "locked" else NIRS[100]  # the free one: a repeat
        try:
            seen[who].append(look(guard, who, value, path))
        except PractitionerLocked:
            seen[who].append("locked")
        except GuardUnavailable:
            seen[who].append("unavailable")
        except LookupDenied as exc:
            seen[who].append(exc.code)
        time.sleep(later * 2)
    redis_proxy.stop_cutting()
    assert redis_proxy.duplicates > 0
    assert set(seen["locked"]) <= {"locked", "unavailable"}, seen
    assert set(seen["free"]) <= {"allowed", "unavailable"}, seen
    assert seen["locked"].count("locked") > 0
    guard.close()


# -- a server that is loading, or a replica ---------------------------------------------------


def _start(server: RedisServer, *extra: str) -> subprocess.Popen[bytes]:
    """Start ``server``'s redis-server again on its directory, without waiting for it."""
    return subprocess.Popen(
        ["redis-server", "--port", str(server.port), "--bind", "127.0.0.1", "--dir",
         str(server.directory), "--appendonly", "no", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
def loading_redis() -> Iterator[tuple[RedisServer, Callable[[], subprocess.Popen[bytes]]]]:
    """A server whose data set takes seconds to load (key-load-delay): restarted, it
    answers LOADING to every call until it is done."""
    with RedisServer(extra_args=("--save", "")) as server:
        script = "for i=1,30000 do redis.call('SET', 'filler:' .. i, i) end return 1"
        server.command("EVAL", script, "0")
        server.command("SAVE")
        process = server.process
        assert process is not None
        process.terminate()
        process.wait(5)
        server.process = None
        started: list[subprocess.Popen[bytes]] = []

        def restart() -> subprocess.Popen[bytes]:
            proc = _start(
                server,
                *("--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024"),
                *("--save", ""),
            )
            started.append(proc)
            return proc

        try:
            yield server, restart
        finally:
            for proc in started:
                proc.kill()
                proc.wait(5)


@PATHS
def test_a_server_still_loading_its_data_is_an_outage(
    loading_redis: tuple[RedisServer, Callable[[], subprocess.Popen[bytes]]], path: str
) -> None:
    """Before: LOADING was an HTTP 500 on the async path (80 of them in an AOF restart)."""
    server, restart = loading_redis
    restart()
    deadline = time.monotonic() + 5
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = server.command("PING")
        except (RuntimeError, OSError) as exc:
            seen = str(exc)
        if "LOADING" in str(seen):
            break
        time.sleep(0.01)
    assert "LOADING" in str(seen)
    guard = guard_on(server.url())
    took = timed(lambda: look(guard, "dr", NIRS[0], path), GuardUnavailable)
    assert took < DEADLINE + SLACK
    open_guard = guard_on(server.url(), fail_open=True)
    assert look(open_guard, "dr", NIRS[1], path) == "None"  # an outage: fail_open applies
    guard.close()
    open_guard.close()


@PATHS
def test_a_replica_refusing_writes_is_an_outage(private_redis: RedisServer, path: str) -> None:
    with RedisServer() as primary:
        private_redis.command("REPLICAOF", "127.0.0.1", str(primary.port))
        guard = guard_on(private_redis.url())
        took = timed(lambda: look(guard, "dr", NIRS[0], path), GuardUnavailable)
        assert took < DEADLINE + SLACK
        private_redis.command("REPLICAOF", "NO", "ONE")
        assert look(guard, "dr", NIRS[1], path) == "allowed"  # promoted: decided again
        guard.close()


# -- misconfigurations: loud, and never let through --------------------------------------------


@PATHS
@pytest.mark.parametrize("fail_open", [False, True], ids=["closed", "fail_open"])
def test_a_wrong_password_is_a_misconfiguration_not_an_outage(
    private_redis: RedisServer, path: str, fail_open: bool
) -> None:
    private_redis.command("CONFIG", "SET", "requirepass", "right-secret")
    for url in (
        f"redis://:wrong-secret@127.0.0.1:{private_redis.port}/0",
        f"redis://127.0.0.1:{private_redis.port}/0",  # no password at all: NOAUTH
    ):
        guard = guard_on(url, fail_open=fail_open)
        with pytest.raises(ConfigurationError) as caught:
            look(guard, "dr", NIRS[0], path)
        assert "wrong-secret" not in str(caught.value)
        with pytest.raises(ConfigurationError):
            guard.status("dr")  # status says so too
        guard.close()


@PATHS
def test_an_acl_that_forbids_the_library_is_a_misconfiguration(
    private_redis: RedisServer, path: str
) -> None:
    private_redis.command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@read", "+ping")
    guard = guard_on(f"redis://reader:pw@127.0.0.1:{private_redis.port}/0", fail_open=True)
    with pytest.raises(ConfigurationError):
        look(guard, "dr", NIRS[0], path)
    guard.close()


@PATHS
def test_a_server_that_knows_no_command_to_run_the_library_is_a_misconfiguration(
    path: str,
) -> None:
    args = ("--rename-command", "FCALL", "", "--rename-command", "EVALSHA", "")
    with RedisServer(extra_args=args) as server:
        guard = guard_on(server.url(), fail_open=True)
        with pytest.raises(ConfigurationError):
            look(guard, "dr", NIRS[0], path)
        guard.close()


@PATHS
def test_a_cluster_node_given_as_a_plain_server_is_a_misconfiguration(
    redis_cluster_url: str, path: str
) -> None:
    nodes = redis_cluster_url.split("://", 1)[1].split(",")
    for node in nodes:  # one of them does not own the practitioner's slot: MOVED
        guard = guard_on(f"redis://{node}/0", fail_open=True)
        try:
            look(guard, "dr", NIRS[0], path)
        except ConfigurationError:
            guard.close()
            return
        guard.close()
    raise AssertionError("every node answered as a plain server")


@pytest.mark.parametrize(
    ("uri", "options"),
    [
        ("redis://:hunter2@127.0.0.1:notaport/0", None),
        ("redis+cluster://:hunter2@", None),
        ("redis+sentinel://:hunter2@127.0.0.1:26379", None),
        ("redis://127.0.0.1:6379/0", {"decode_responses": True}),
        ("rediss://127.0.0.1:6379/0", {"ssl_ca_certs": "/nonexistent/ca.pem"}),
        ("redis://127.0.0.1:6379/0", {"ssl_ca_certs": "/etc/ssl/ca.pem"}),
        ("mongodb://127.0.0.1/0", None),
    ],
)
def test_a_uri_or_option_that_cannot_work_is_refused_when_the_guard_is_made(
    uri: str, options: dict[str, object] | None
) -> None:
    """Before: a client that could not be built killed the dispatcher thread, and async
    lookups waited 20 x deadline + 5 s, then ran unguarded under fail_open."""
    with pytest.raises(ConfigurationError) as caught:
        guard_on(uri, storage_options=options, fail_open=True)
    assert "hunter2" not in str(caught.value) and uri not in str(caught.value)


@PATHS
def test_a_host_name_that_does_not_resolve_is_a_misconfiguration(path: str) -> None:
    guard = guard_on("redis://no-such-host.invalid:6379/0", fail_open=True)
    with pytest.raises(ConfigurationError):
        look(guard, "dr", NIRS[0], path)
    guard.close()


@PATHS
def test_a_server_that_is_down_at_start_up_is_an_outage_within_the_deadline(path: str) -> None:
    guard = guard_on(f"redis://127.0.0.1:{free_port()}/0")
    took = timed(lambda: look(guard, "dr", NIRS[0], path), GuardUnavailable)
    assert took < DEADLINE + SLACK
    guard.close()


@PATHS
def test_a_paused_server_at_start_up_is_an_outage_within_the_deadline(
    private_redis: RedisServer, path: str
) -> None:
    guard = guard_on(private_redis.url())
    with private_redis.paused():
        took = timed(lambda: look(guard, "dr", NIRS[0], path), GuardUnavailable)
    assert took < DEADLINE + SLACK
    assert look(guard, "dr", NIRS[1], path) == "allowed"
    guard.close()


# -- Sentinel -------------------------------------------------------------------------------------


@PATHS
def test_lookups_through_a_sentinel_reach_the_primary(
    private_redis: RedisServer, path: str
) -> None:
    with RedisSentinel(private_redis) as sentinel:
        guard = guard_on(sentinel.url)
        assert look(guard, "dr", NIRS[0], path) == "allowed"
        assert guard.status("dr").remaining["lookups"] == 999
        guard.close()
        unknown = guard_on(sentinel.url.replace("mymaster", "nosuchservice"), fail_open=True)
        with pytest.raises(ConfigurationError):
            look(unknown, "dr", NIRS[1], path)
        unknown.close()


@PATHS
def test_a_stalled_sentinel_is_an_outage_within_the_deadline(
    private_redis: RedisServer, path: str
) -> None:
    with RedisSentinel(private_redis) as sentinel:
        guard = guard_on(sentinel.url)
        assert sentinel.process is not None
        sentinel.process.send_signal(signal.SIGSTOP)
        try:
            took = timed(lambda: look(guard, "dr", NIRS[0], path), GuardUnavailable)
        finally:
            sentinel.process.send_signal(signal.SIGCONT)
        assert took < DEADLINE + SLACK
        assert look(guard, "dr", NIRS[1], path) == "allowed"
        guard.close()


# -- TLS ------------------------------------------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 (cert, key, CA)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nirguard test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = directory / "server.pem", directory / "server.key", directory / "ca.pem"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks TLS only (its port, and the CA that signed it)."""
    cert, key, ca = _certificates(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file",
         str(ca), "--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip("redis-server without TLS")
                time.sleep(0.05)
        yield port, ca
    finally:
        proc.terminate()
        proc.wait(5)


@PATHS
def test_tls_with_the_servers_ca_decides(tls_redis: tuple[int, Path], path: str) -> None:
    port, ca = tls_redis
    guard = guard_on(f"rediss://127.0.0.1:{port}/0", storage_options={"ssl_ca_certs": str(ca)})
    assert look(guard, "dr", NIRS[0], path) == "allowed"
    guard.close()


@PATHS
def test_a_certificate_that_fails_verification_is_a_misconfiguration(
    tls_redis: tuple[int, Path], path: str
) -> None:
    """Before: a failed TLS check was an outage, so fail_open ran every lookup unguarded."""
    port, _ = tls_redis
    guard = guard_on(f"rediss://127.0.0.1:{port}/0", fail_open=True)  # the system's CAs
    with pytest.raises(ConfigurationError):
        look(guard, "dr", NIRS[0], path)
    guard.close()
