"""A storage URI or option the guard cannot use is a ConfigurationError when the guard is made.

Never at the first lookup, and so never under ``fail_open``: before, ``socket_timeout=nan``
passed the check, failed every call as an outage, and ``fail_open=True`` let every lookup
through unguarded; ``socket_timeout=inf`` raised ``OverflowError`` at each lookup; a port
out of range was an outage; a client name with a space was a server error at each lookup.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from nirguard import ConfigurationError, LookupGuard, Pseudonymiser, QuotaPolicy
from nirguard._redis.connect import parse
from tests.guard_helpers import KEY
from tests.redis_tools import free_port

PASSWORD = "hunter2-s3cret"


def make(url: str, options: dict[str, Any] | None = None, **kwargs: Any) -> LookupGuard:
    return LookupGuard(
        QuotaPolicy.only(lookups="1000/hour"),
        storage=url,
        storage_options=options,
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        metrics=False,
        **kwargs,
    )


UNUSABLE = [
    ("socket_timeout", "abc"),
    ("socket_timeout", "nan"),
    ("socket_timeout", "inf"),
    ("socket_timeout", "-inf"),
    ("socket_timeout", "1e400"),
    ("socket_timeout", "0"),
    ("socket_timeout", "-1"),
    ("socket_timeout", "1e9"),
    ("socket_timeout", "0x10"),
    ("socket_connect_timeout", "nan"),
    ("socket_connect_timeout", "abc"),
    ("max_connections", "0"),
    ("max_connections", "nan"),
    ("max_connections", "1e9"),
    ("db", "99999999999999999999"),
    ("db", "-1"),
    ("db", "1.5"),
    ("client_name", "two words"),
    ("client_name", "line\nbreak"),
    ("socket_keepalive", "maybe"),
    ("protocol", "three"),
]


@pytest.mark.parametrize("fail_open", [False, True])
@pytest.mark.parametrize(("option", "value"), UNUSABLE)
def test_an_unusable_option_is_refused_when_the_guard_is_made(
    option: str, value: str, fail_open: bool
) -> None:
    from urllib.parse import quote

    port = free_port()  # nothing listens: a guard that got made would only meet an outage
    for url, options in (
        (f"redis://:{PASSWORD}@127.0.0.1:{port}/0?{option}={quote(value)}", None),
        (f"redis://:{PASSWORD}@127.0.0.1:{port}/0", {option: value}),
        (f"redis+cluster://:{PASSWORD}@127.0.0.1:{port}?{option}={quote(value)}", None),
    ):
        if option == "db" and "cluster" in url:
            continue  # a Cluster has only database 0: refused for that reason already
        with pytest.raises(ConfigurationError) as caught:
            make(url, options, fail_open=fail_open)
        message = str(caught.value)
        assert option in message
        assert PASSWORD not in message
        # the port as a number of its own (a random port can be part of 2147483647)
        assert re.search(rf"(?<!\d){port}(?!\d)", message) is None
        assert value not in message or value == "0"  # "0" is in the range it states


def test_a_non_finite_number_given_as_a_float_is_refused_too() -> None:
    for value in (float("nan"), float("inf"), -float("inf"), True):
        with pytest.raises(ConfigurationError):
            parse("redis://127.0.0.1:6379/0", {"socket_timeout": value})


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-1", "6379x"])
def test_a_port_out_of_range_is_refused_when_the_guard_is_made(port: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", fail_open=True)
    assert PASSWORD not in str(caught.value) and port not in str(caught.value)


def test_usable_values_still_parse_to_what_they_say() -> None:
    target = parse(
        "redis://127.0.0.1:65535/7?socket_timeout=2.5&socket_connect_timeout=0.25"
        "&max_connections=8&client_name=portal-A_1",
        {"socket_keepalive": "yes"},
    )
    assert target.timeout == 2.5 and target.max_connections == 8
    [node] = target.nodes
    assert (node.port, node.db, node.connect_timeout, node.keepalive) == (65535, 7, 0.25, True)
    assert node.client_name == "portal-A_1"
    assert parse("redis://127.0.0.1/0?socket_timeout=86400").timeout == 86400.0


def test_a_guard_with_usable_options_serves_lookups(redis_url: str, redis_prefix: str) -> None:
    url = redis_url + ("&" if "?" in redis_url else "?") + "socket_timeout=2.5&client_name=nirguard"
    guard = make(url, {"socket_connect_timeout": "1"}, key_prefix=redis_prefix)
    try:
        with guard.lookup("10003456789", "185057800608491") as lookup:
            lookup.record({"name": "someone"})
        assert lookup.outcome == "allowed"
    finally:
        guard.close()
