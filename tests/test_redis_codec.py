"""The Redis request path's shortcuts, held to their general twins: commands packed by
hiredis as by Python, the library's replies read on the fast path as on the general one,
and a lookup on one server decided without the plan once the warm-up is known."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy
from nirguard._redis.codec import Codec, decision
from nirguard._redis.wire import pack, pack_python
from nirguard.testing import NIRGenerator
from tests.guard_helpers import KEY
from tests.redis_tools import RedisServer


def test_commands_are_packed_as_resp_arrays_of_bulk_strings() -> None:
    for packer in (pack, pack_python):
        assert packer([("SET", b"k\r\n", "12", "é")]) == (
            b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$2\r\n\xc3\xa9\r\n"
        )
        assert packer([]) == b""


@given(
    st.lists(
        st.lists(st.one_of(st.text(), st.binary()), min_size=1, max_size=16).map(tuple),
        max_size=4,
    )
)
def test_hiredis_packs_every_command_as_the_python_packer_does(commands: list[Any]) -> None:
    # The request path packs with hiredis (C) when it can; before hiredis 2.1 there is
    # no packer and the Python one packs: both write the same bytes, non-ASCII, CR/LF
    # and empty arguments included, and both refuse a text UTF-8 cannot encode.
    try:
        expected = pack_python(commands)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            pack(commands)
        return
    assert pack(commands) == expected


_NUMBER = st.integers(min_value=-1, max_value=2**40)
_OUTCOMES = st.sampled_from([b"allowed", b"break_glass", b"denied", b"locked", b"invalid"])


@given(
    _OUTCOMES,
    st.sampled_from([b"", b"lookups", b"distinct_patients", b"miss_ratio", b"baseline"]),
    st.lists(_NUMBER, min_size=16, max_size=17),
)
def test_the_fast_reading_of_a_reply_is_the_general_one(
    outcome: bytes, quota: bytes, numbers: list[int]
) -> None:
    # The library answers integers, read positionally on the fast path; the same reply
    # with its numbers as strings takes the general path: one decision either way.
    fast = decision([outcome, quota, *numbers])
    general = decision([outcome, quota, *(str(n).encode() for n in numbers)])
    assert fast == general
    assert fast.outcome == outcome.decode() and fast.quota == (quota.decode() or None)
    assert fast.retry_after == (numbers[0] / 1000 if numbers[0] >= 0 else None)
    assert fast.adjacent == numbers[15]


def test_a_short_reply_is_read_with_its_defaults() -> None:
    # A library older than the baseline's fields answers 14 items.
    found = decision([b"allowed", b"", *([0] * 12)])
    assert found.outcome == "allowed" and found.history is None
    assert found.usual == 0.0 and found.adjacent == 0


@pytest.mark.parametrize("path", ["sync", "async"])
def test_past_the_warm_up_read_a_lookup_on_one_server_runs_no_plan(
    private_redis: RedisServer, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The quick path is what a lookup costs the portal (docs/redis.md, "Under load"): on a
    # single server only the first lookup of a process, which reads when the store started
    # watching the portal (hot_cohort_warmup), runs Codec.decide's plan; the rest go
    # straight to the transport, and decide as the plan would.
    guard = LookupGuard(
        QuotaPolicy(),
        storage=private_redis.url(),
        pseudonymiser=Pseudonymiser(KEY, purpose="guard"),
        key_prefix="quick",
    )
    planned: list[str] = []
    plan = Codec.decide

    def spied(self: Codec, request: Any) -> Any:
        planned.append(request.practitioner)
        return plan(self, request)

    monkeypatch.setattr(Codec, "decide", spied)

    def look(who: str, value: str) -> str | None:
        if path == "sync":
            with guard.lookup(who, value) as lookup:
                return lookup.outcome

        async def one() -> str | None:
            async with guard.lookup(who, value) as lookup:
                return lookup.outcome

        return asyncio.run(one())

    outcomes = [look(f"dr{i}", value) for i, value in enumerate(NIRGenerator(seed=9).many(4))]
    assert outcomes == ["allowed"] * 4
    assert planned == ["dr0"]
    guard.close()
