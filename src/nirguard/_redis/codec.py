"""What the Redis engine asks the Lua library, and what its replies mean. No I/O here.

Each operation is a *plan*: a generator that yields the library calls to make,
one at a time, receives each call's reply, and returns the operation's result.
A single node (or Sentinel) decides a lookup in one call (``admit``); on a
Cluster a lookup makes one call per slot it needs: a repeat (a patient the
practitioner already has) one call, to the practitioner's slot; a new patient
three, the practitioner's, the cohort's heat, the practitioner's again, or while
the store warms up (no cohort can be hot) two, the practitioner's, then the
cohort's heat (docs/redis.md, "Redis Cluster").

The engine (:mod:`nirguard._redis.engine`) drives plans over a transport, sync or
async; the function/script protocol (:mod:`nirguard._redis.script`) turns each
:class:`~nirguard._redis.script.Call` into commands. Argument lists and reply
fields are the Lua code's (``_admit.lua``: KEYS, ARGV and the reply are described
at its top); this module is the only Python that knows them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final, TypeVar, cast

from nirguard._baseline import shown
from nirguard._compiled import INDEFINITE, CompiledPolicy
from nirguard._engine import Decision, Keys, RawStatus, Request, fingerprint
from nirguard._redis.script import KEYS, Call, Reply
from nirguard.errors import ConfigurationError

__all__ = ["Codec", "Plan", "decision", "simulated_clock", "status"]

T = TypeVar("T")
#: Seconds between two reads of when the store started watching the portal.
REREAD = 3600.0
#: Yields calls, receives each call's reply, returns the operation's result.
Plan = Generator[Call, Reply, T]
#: The types of the numbers of a reply the library wrote (hiredis reads them as ``int``).
_INTEGERS: Final = {int}


def _text(value: Reply) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _items(reply: Reply) -> Sequence[Reply]:
    if not isinstance(reply, list):
        raise TypeError("nirguard: the library answered something other than an array")
    return reply


def decision(reply: Reply) -> Decision:
    """The script's reply: two strings, then integers (-1 for "none"; times in ms)."""
    items = _items(reply)
    if len(items) >= 18 and type(items[0]) is bytes and type(items[1]) is bytes:
        numbers = items[2:18]
        if set(map(type, numbers)) == _INTEGERS:  # what the library sends: no conversions
            return _decided(items[0].decode(), items[1].decode(), *numbers)  # type: ignore[arg-type]
    outcome, quota = _text(items[0]), _text(items[1])
    retry, started, level, hot, alert, heat, expected, left, count, limit, incident, opens = (
        int(v) for v in cast("list[bytes | int]", items[2:14])
    )
    usual, history, off = (int(_text(v)) for v in items[14:17]) if len(items) > 14 else (0, -1, 0)
    adjacent = int(_text(items[17])) if len(items) > 17 else 0
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
        incident=incident / 1000 if incident >= 0 else None,
        alert=opens == 1,
        usual=usual / 1000,
        history=history if history >= 0 else None,
        off_hours=off,
        adjacent=adjacent,
    )


def _decided(
    outcome: str,
    quota: str,
    retry: int,
    started: int,
    level: int,
    hot: int,
    alert: int,
    heat: int,
    expected: int,
    left: int,
    count: int,
    limit: int,
    incident: int,
    opens: int,
    usual: int,
    history: int,
    off: int,
    adjacent: int,
) -> Decision:
    """:func:`decision` of a reply whose numbers are all integers: the same fields, built
    positionally (a keyword per field cost the request path ~2 us)."""
    return Decision(
        outcome,
        quota or None,
        retry / 1000 if retry >= 0 else None,
        started == 1,
        level,
        hot == 1,
        alert == 1,
        heat / 1000,
        expected / 1000,
        left if left >= 0 else None,
        count if count >= 0 else None,
        limit if limit >= 0 else None,
        incident / 1000 if incident >= 0 else None,
        opens == 1,
        usual / 1000,
        history if history >= 0 else None,
        off,
        adjacent,
    )


def _heat_of(reply: Reply) -> tuple[bool, bool, float, float, int]:
    """The mode heat's reply: "heat", then hot, alert, heat and expected heat (in
    thousandths), and the neighbours it saw (``sequence``: bits)."""
    hot, alert, found, expected, adjacent = (int(_text(v)) for v in _items(reply)[1:6])
    return hot == 1, alert == 1, found / 1000, expected / 1000, adjacent


def _asks_heat(reply: Reply) -> bool:
    """Whether the practitioner's call asks for the cohort's heat first (the reply "heat")."""
    items = _items(reply)
    return len(items) == 1 and _text(items[0]) == "heat"


_STATUS_QUOTAS = (
    "lookups",
    "distinct_patients",
    "invalid_nirs",
    "misses",
    "portal_cohort",
    "break_glass",
    "strikes",
    "portal",
)


def status(reply: Reply, policy: CompiledPolicy) -> RawStatus:
    """The ``status`` mode's reply: name/value pairs ("" = none)."""
    items = [_text(v) for v in _items(reply)]
    out = RawStatus()
    pairs = dict(zip(items[::2], items[1::2], strict=True))
    for name in _STATUS_QUOTAS:
        value = pairs.get(name, "")
        out.remaining[name] = int(value) if value else None
    if not policy.portal:
        out.remaining["portal"] = None
    locked = pairs.get("locked_for", "")
    out.locked_for = float(locked) if locked else None
    if out.locked_for is not None and out.locked_for > INDEFINITE / 2:
        out.locked_for = float("inf")
    out.level = int(pairs.get("level", "0"))
    if pairs.get("baseline"):
        out.baseline = shown(tuple(float(v) for v in pairs["baseline"].split()))
    return out


def simulated_clock(
    options: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, Callable[[], float] | None]:
    """``storage_options`` without ``"simulated_clock"``, and that clock (``None``: the
    server's). With it, every call carries the simulated time instead of asking the
    server's ``TIME``: for tests, benchmarks and the replay only (docs/redis.md).

    Raises:
        ConfigurationError: the clock is not a zero-argument callable.
    """
    if not options or "simulated_clock" not in options:
        return options, None
    rest = dict(options)
    clock = rest.pop("simulated_clock")
    if not callable(clock):
        raise ConfigurationError("simulated_clock must be a zero-argument callable")
    return rest, clock


def _counts_heat(request: Request) -> bool:
    """Whether the lookup counts in its cohort's heat (a valid NIR, ``hot_cohort`` on)."""
    return (
        request.policy.hot_cohort is not None
        and request.cohort is not None
        and request.patient is not None
    )


class Codec:
    """The plans of one engine: its key prefix, whether the store is a Cluster, and the
    simulated clock it decides on, if any (see :class:`~nirguard._redis.RedisEngine`)."""

    __slots__ = ("_read", "_shift", "_since", "clock", "cluster", "prefix")

    def __init__(
        self, prefix: str, *, cluster: bool, clock: Callable[[], float] | None = None
    ) -> None:
        self.prefix = prefix
        self.cluster = cluster
        self.clock = clock
        self._shift: float | None = None
        self._since: float | None = None  # when the store started watching the portal
        self._read = 0.0  # when this process last read it (monotonic)

    # -- arguments ------------------------------------------------------------------------------

    def _keys(self, request: Request) -> Keys:
        p = request.policy
        return Keys(self.prefix, request.practitioner, request.cohort, p.heat_suffix)

    def _now(self, request: Request) -> str:
        """ARGV 2: "" (the server's clock), the request's time, or the simulated clock's
        time and its shift onto the server's (for the records' expiries)."""
        clock = self.clock
        if clock is None:
            return "" if request.now is None else repr(request.now)
        now = clock() if request.now is None else request.now
        if self._shift is None:
            self._shift = time.time() - now
        return f"{now!r} {self._shift!r}"

    def _call(
        self,
        mode: str,
        request: Request,
        keys: Sequence[str],
        heat: str = "0",
        given: str = "",
        cold: bool = False,
    ) -> Call:
        patient, cohort = request.patient, request.cohort
        flags = (  # one f-string (five concatenations and a format() cost ~0.5 us more)
            f"{'0' if patient is None else '1'}{'0' if cohort is None else '1'}"
            f"{'1' if request.reason else '0'}{heat}{'1' if cold else '0'}{request.place & 0xFF:02x}"
        )
        if request.session:  # the session's fingerprint (_sessions.lua)
            flags += request.session.hex()
        # fingerprints as the records hold them (6 bytes each): the library decodes nothing
        found = b"" if patient is None else fingerprint(patient)
        if request.neighbours:  # sequence: the neighbours' fingerprints
            found += request.neighbours
        policy = request.policy
        args = (
            mode,
            self._now(request),
            policy.lua_digest,
            flags,
            found,
            b"" if cohort is None else fingerprint(cohort),
            given,
        )
        return Call(tuple(keys), args, (*args, policy.lua_policy))

    def _own(self, request: Request, mode: str) -> Call:
        return self._call(mode, request, (self._keys(request).account,) * KEYS)

    # -- plans ----------------------------------------------------------------------------------

    def _warming(self, request: Request) -> bool | None:
        """Whether the store is still warming up (``hot_cohort_warmup``), or ``None`` when
        its start is to be read first: once per process, then at most hourly (a flushed
        store warms up again)."""
        warmup = request.policy.hot_warmup
        if not warmup:
            return False
        since = self._since
        if since is None or time.monotonic() - self._read > REREAD:
            return None
        clock = self.clock
        if request.now is not None:
            now = request.now
        else:
            now = clock() if clock is not None else time.time()
        return now - since < warmup

    def _cold(self, request: Request) -> Plan[bool]:
        """:meth:`_warming`, reading the store's start when it is due."""
        cold = self._warming(request)
        if cold is None:
            k = self._keys(request)
            reply = _items((yield self._call("since", request, (k.since,) * KEYS)))
            self._since, self._read = float(_text(reply[1])), time.monotonic()
            cold = bool(self._warming(request))
        return cold

    def admit(self, request: Request) -> Call | None:
        """The one call of :meth:`decide` on a single node, made without a plan (the
        engine's quick path); ``None`` on a Cluster, or when the store's start is due to
        be read first: then run :meth:`decide`."""
        if self.cluster:
            return None
        heat = _counts_heat(request)
        cold = self._warming(request) if heat else False
        if cold is None:
            return None
        return self._admit(request, heat, cold)

    def _admit(self, request: Request, heat: bool, cold: bool) -> Call:
        """The single node's call that decides a lookup (mode ``admit``)."""
        k = self._keys(request)
        keys = (k.account, k.recent, k.heat if heat else k.account, k.portal)
        return self._call("admit", request, keys, "1" if heat else "0", "", cold)

    def decide(self, request: Request) -> Plan[Decision]:
        """Decide a lookup of a valid NIR: one call on a single node; on a Cluster, one
        call per slot the lookup needs: the portal quota's (only when ``portal`` is set),
        the practitioner's, and for a patient new to the practitioner the cohort's heat,
        then the practitioner's again, told what the cohort's step found."""
        p = request.policy
        heat = _counts_heat(request)
        cold = (yield from self._cold(request)) if heat else False
        if not self.cluster:
            return decision((yield self._admit(request, heat, cold)))
        k = self._keys(request)
        if p.portal:
            quota = decision((yield self._call("quota", request, (k.portal,) * KEYS)))
            if quota.outcome != "quota":
                return quota
        own = (k.account, k.recent, k.account, k.account)
        if heat and cold and not p.sequence:  # no cohort is hot yet: the heat decides nothing
            return (yield from self._cold_lookup(request, own, k.heat))
        raw = yield self._call("account", request, own, "2" if heat else "0")
        if not _asks_heat(raw):
            return decision(raw)
        hot, alert, found, expected, adjacent = _heat_of((yield self._heat(request, k.heat, cold)))
        given = f"{int(hot)} {found!r} {expected!r} {adjacent}"
        result = decision((yield self._call("account", request, own, "3", given)))
        result.hot_alert = alert
        return result

    def _cold_lookup(self, request: Request, own: Sequence[str], heat: str) -> Plan[Decision]:
        """A lookup on a Cluster while the store warms up, ``sequence`` off: no cohort can
        be hot, so the practitioner's call decides at once, and says whether the patient's
        heat is to be counted (a new patient of an account that was not locked); the
        cohort's call then counts it. Two calls at most, the single node's decision and
        records."""
        reply = yield self._call("account", request, own, "4")
        result, raw = decision(reply), _items(reply)
        if len(raw) > 18 and _text(raw[18]) == "1":
            found = _heat_of((yield self._heat(request, heat, True)))
            result.hot, result.hot_alert, result.heat, result.expected = found[:4]
        return result

    def _heat(self, request: Request, key: str, cold: bool) -> Call:
        """The call that counts a new patient in its cohort's heat (the mode heat)."""
        return self._call("heat", request, (key,) * KEYS, "0", "", cold)

    def invalid(self, request: Request) -> Plan[Decision]:
        """Count an invalid NIR (after the lockout check)."""
        return decision((yield self._own(request, "invalid")))

    def miss(self, request: Request) -> Plan[None]:
        """Count a lookup that found nobody."""
        yield self._own(request, "miss")

    def status(
        self, practitioner: str, policy: CompiledPolicy, now: float | None = None
    ) -> Plan[RawStatus]:
        """Remaining budget per quota, lockout and level."""
        request = Request(practitioner, policy, now=now)
        k = self._keys(request)
        if not self.cluster:  # the portal quota is on this node too: one call reads it
            keys = (k.account, k.account, k.account, k.portal)
            return status((yield self._call("status", request, keys, "1")), policy)
        result = status((yield self._call("status", request, (k.account,) * KEYS)), policy)
        if policy.portal:  # the portal quota lives in its own slot: ask there
            portal = yield self._call("status", request, (k.portal,) * KEYS, "1")
            result.remaining["portal"] = status(portal, policy).remaining["portal"]
        return result

    def unlock(self, practitioner: str, policy: CompiledPolicy) -> Plan[None]:
        """Lift the lockout; forget the escalation and the breaches."""
        request = Request(practitioner, policy)
        yield self._call("unlock", request, (self._keys(request).account,) * KEYS)
