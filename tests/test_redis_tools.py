"""The real-component test utilities behave as documented (tests/redis_tools.py):
a paused server stalls, the proxy counts commands and round trips, and its cuts
happen before the server sees a command or after it ran with the reply lost."""

from __future__ import annotations

import time

import pytest

from tests.redis_tools import RedisCluster, RedisServer, TcpProxy, redis_url_via


def _client(url: str, **options: object) -> object:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options.setdefault("retry", Retry(NoBackoff(), 0))
    return redis.Redis.from_url(url, **options)


def test_redis_url_via_keeps_auth_and_db() -> None:
    assert redis_url_via("redis://:pw@10.0.0.1:6379/4", 7000) == "redis://:pw@127.0.0.1:7000/4"
    assert redis_url_via("redis://localhost:6379", 7000) == "redis://127.0.0.1:7000"


def test_paused_server_stalls_then_answers(private_redis: RedisServer) -> None:
    import redis

    client = _client(private_redis.url(), socket_timeout=0.2)
    assert client.ping()  # type: ignore[attr-defined]
    with private_redis.paused():
        start = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()  # type: ignore[attr-defined]
        assert time.monotonic() - start < 1.0
    assert client.ping()  # type: ignore[attr-defined]


def test_proxy_counts_commands_and_round_trips(
    private_redis: RedisServer, redis_proxy: TcpProxy
) -> None:
    client = _client(redis_proxy.url(private_redis.url(2)))
    client.ping()  # type: ignore[attr-defined]  # connection set-up is not counted below
    redis_proxy.reset_counts()
    for _ in range(3):
        client.ping()  # type: ignore[attr-defined]
    with client.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
        pipe.incr("a")
        pipe.incr("a")
        pipe.get("a")
        assert pipe.execute() == [1, 2, b"2"]
    counts = redis_proxy.counts()
    assert counts.commands == 6
    assert counts.round_trips == 4  # 3 PINGs + one pipeline
    assert counts.names == {"PING": 3, "INCRBY": 2, "GET": 1}


def test_cut_before_the_server_sees_the_command(
    private_redis: RedisServer, redis_proxy: TcpProxy
) -> None:
    import redis

    client = _client(redis_proxy.url(private_redis.url()))
    client.set("n", 0)  # type: ignore[attr-defined]
    redis_proxy.cut_at(2, when="request")
    client.incr("n")  # type: ignore[attr-defined]
    with pytest.raises(redis.ConnectionError):
        client.incr("n")  # type: ignore[attr-defined]
    assert client.get("n") == b"1"  # type: ignore[attr-defined]  # the cut one never ran
    assert redis_proxy.cuts == 1


def test_cut_after_the_command_ran_loses_the_reply(
    private_redis: RedisServer, redis_proxy: TcpProxy
) -> None:
    import redis

    client = _client(redis_proxy.url(private_redis.url()))
    client.set("n", 0)  # type: ignore[attr-defined]
    redis_proxy.cut_at(1, when="reply")
    with pytest.raises(redis.ConnectionError):
        client.incr("n")  # type: ignore[attr-defined]
    assert client.get("n") == b"1"  # type: ignore[attr-defined]  # it ran; the client never heard


def test_cut_all_and_refuse(private_redis: RedisServer, redis_proxy: TcpProxy) -> None:
    import redis

    client = _client(redis_proxy.url(private_redis.url()))
    client.ping()  # type: ignore[attr-defined]
    assert redis_proxy.cut_all() == 1
    # redis-py notices a dead idle connection when it takes it from the pool and reconnects:
    assert client.ping()  # type: ignore[attr-defined]
    assert redis_proxy.counts().connections == 2
    redis_proxy.refuse = True
    redis_proxy.cut_all()
    with pytest.raises(redis.ConnectionError):
        client.ping()  # type: ignore[attr-defined]
    redis_proxy.refuse = False
    assert client.ping()  # type: ignore[attr-defined]


def test_random_cuts_are_seeded_and_counted(private_redis: RedisServer) -> None:
    import redis

    def run() -> tuple[int, int]:
        with TcpProxy(("127.0.0.1", private_redis.port), seed=5) as proxy:
            client = _client(proxy.url(private_redis.url()))
            proxy.cut_randomly(0.3, when="request")
            failed = 0
            for _ in range(40):
                try:
                    client.ping()  # type: ignore[attr-defined]
                except redis.ConnectionError:
                    failed += 1
            return failed, proxy.cuts

    first = run()
    assert first == run()
    assert 0 < first[0] == first[1] < 40


def test_delay_holds_replies(private_redis: RedisServer, redis_proxy: TcpProxy) -> None:
    client = _client(redis_proxy.url(private_redis.url()))
    client.ping()  # type: ignore[attr-defined]
    redis_proxy.delay = 0.15
    start = time.monotonic()
    client.ping()  # type: ignore[attr-defined]
    assert time.monotonic() - start >= 0.15


def test_cluster_node_for_key(redis_cluster: RedisCluster) -> None:
    from redis.cluster import ClusterNode
    from redis.cluster import RedisCluster as Client

    client = Client(startup_nodes=[ClusterNode("127.0.0.1", redis_cluster.nodes[0].port)])
    try:
        client.set("tools-test-{abc}", "1")
        owner = redis_cluster.node_for_key("tools-test-{abc}")
        assert owner.command("EXISTS", "tools-test-{abc}") == "1"
        client.delete("tools-test-{abc}")
    finally:
        client.close()
