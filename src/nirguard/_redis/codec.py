"""What the Redis engine asks the Lua library, and what its replies mean. No I/O here.

Each operation is a *plan*: a generator that yields the library calls to make,
one at a time, receives each call's reply, and returns the operation's result.
A single node (or Sentinel) decides a lookup in one call (``admit``); on a
Cluster the portal-wide keys and a practitioner's keys live in different slots,
so a lookup is the portal step, then the account step told what the first found.

The engine (:mod:`nirguard._redis.engine`) drives plans over a transport, sync or
async; the function/script protocol (:mod:`nirguard._redis.script`) turns each
:class:`~nirguard._redis.script.Call` into commands. Argument lists and reply
fields are the Lua code's (``_admit.lua``: KEYS, ARGV and the reply are described
at its top); this module is the only Python that knows them.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TypeVar

from nirguard._compiled import INDEFINITE, CompiledPolicy
from nirguard._engine import Decision, Keys, RawStatus, Request
from nirguard._redis.script import Call, Reply

__all__ = ["Codec", "Plan", "decision", "status"]

T = TypeVar("T")
#: Yields calls, receives each call's reply, returns the operation's result.
Plan = Generator[Call, Reply, T]

#: ARGV slots before the policy's text (ARGV 8 when the server lacks the digest).
_ARGS_BEFORE_POLICY = 7


def _text(value: Reply) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _items(reply: Reply) -> Sequence[Reply]:
    if not isinstance(reply, list):
        raise TypeError("nirguard: the library answered something other than an array")
    return reply


def decision(reply: Reply) -> Decision:
    """The script's reply: two strings, then integers (-1 for "none"; times in ms)."""
    items = _items(reply)
    outcome, quota = _text(items[0]), _text(items[1])
    retry, started, level, hot, alert, heat, expected, left, count, limit = (
        int(_text(v)) for v in items[2:12]
    )
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
    )


_STATUS_QUOTAS = (
    "lookups",
    "distinct_patients",
    "invalid_nirs",
    "misses",
    "portal_cohort",
    "break_glass",
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
    return out


class Codec:
    """The plans of one engine: its key prefix, and whether the store is a Cluster."""

    __slots__ = ("cluster", "prefix")

    def __init__(self, prefix: str, *, cluster: bool) -> None:
        self.prefix = prefix
        self.cluster = cluster

    # -- arguments ------------------------------------------------------------------------------

    def _keys(self, request: Request) -> Keys:
        return Keys(
            self.prefix,
            request.practitioner,
            request.patient,
            request.cohort,
            request.policy.heat_suffix,
        )

    def _call(
        self, mode: str, request: Request, keys: Sequence[str], hot: bool = False, *extra: str
    ) -> Call:
        flags = (
            ("1" if request.patient is not None else "0")
            + ("1" if request.cohort is not None else "0")
            + ("1" if request.reason else "0")
            + ("1" if hot else "0")
        )
        now = "" if request.now is None else repr(request.now)
        policy = request.policy
        args = (mode, now, policy.lua_digest, flags, request.patient or "", *extra)
        padded = args + ("",) * (_ARGS_BEFORE_POLICY - len(args))
        return Call(tuple(keys), args, (*padded[:_ARGS_BEFORE_POLICY], policy.lua_policy))

    def _own(self, request: Request, mode: str) -> Call:
        return self._call(mode, request, (self._keys(request).account,) * 6)

    def _portal(self, request: Request) -> Call | None:
        p = request.policy
        if not p.portal and (p.hot_cohort is None or request.cohort is None):
            return None
        k = self._keys(request)
        return self._call("portal", request, (k.portal,) * 4 + (k.portal_seen, k.heat))

    def _account(self, request: Request, portal: Decision) -> Call:
        k = self._keys(request)
        own = (k.account, k.patient, k.walk, k.account, k.account, k.account)
        return self._call(
            "account", request, own, portal.hot, repr(portal.heat), repr(portal.expected)
        )

    # -- plans ----------------------------------------------------------------------------------

    def decide(self, request: Request) -> Plan[Decision]:
        """Decide a lookup of a valid NIR: one call, or on a Cluster the portal step
        (its slot) then the account step (the practitioner's)."""
        if not self.cluster:
            k = self._keys(request)
            keys = (k.account, k.patient, k.walk, k.portal, k.portal_seen, k.heat)
            return decision((yield self._call("admit", request, keys)))
        portal = Decision("portal")
        first = self._portal(request)
        if first is not None:
            portal = decision((yield first))
            if portal.outcome != "portal":
                return portal
        result = decision((yield self._account(request, portal)))
        result.hot_alert = portal.hot_alert
        return result

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
        if not self.cluster:  # the portal keys are in this slot too: one call reads them
            keys = (k.account, k.account, k.account, k.portal, k.portal, k.portal)
            return status((yield self._call("status", request, keys, True)), policy)
        result = status((yield self._call("status", request, (k.account,) * 6)), policy)
        if policy.portal:  # the portal quota lives in the portal's slot: ask there
            portal = yield self._call("status", request, (k.portal,) * 6, True)
            result.remaining["portal"] = status(portal, policy).remaining["portal"]
        return result

    def unlock(self, practitioner: str, policy: CompiledPolicy) -> Plan[None]:
        """Lift the lockout; forget the escalation and the breaches."""
        request = Request(practitioner, policy)
        yield self._call("unlock", request, (self._keys(request).account,) * 6)
