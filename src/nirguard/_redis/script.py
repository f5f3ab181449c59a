"""The guard's Lua library on a server, and the protocol to call it, written once.

``_admit.lua`` runs as a Redis Function (``FCALL``; Redis 7 and later) and, on a
server without Functions, as a script (``EVALSHA``). :meth:`Library.exchange`
makes one :class:`Call` and recovers from what a server may lack, for the sync
and the async transport alike (it yields command batches and does no I/O):

* ``function not found`` (a restart, a failover to an empty replica, ``FUNCTION
  FLUSH``): ``FUNCTION LOAD`` and the call again, in one write;
* ``unknown command`` for ``FCALL`` (Redis 6): scripts from then on;
* ``NOSCRIPT``: ``SCRIPT LOAD`` and the call again, in one write;
* ``NOPOLICY`` (the server does not know the policy's digest): the call again,
  with the policy's text.

A server that lost the library lost the policies too: the call after a load is
sent with the policy's text, so a recovery is one extra round trip. Any other
error reply is what :func:`~nirguard._redis.outage.classify` says it is.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Final

from nirguard._redis.outage import classify
from nirguard._redis.route import Hop, Route
from nirguard._redis.wire import Command, Reply, ReplyError

__all__ = ["FUNCTION", "KEYS", "Call", "Library", "Reply"]

#: The library: the records' formats, the policy's compiler, the account step, the decision
#: (in that order).
BODY: Final = "\n".join(
    files("nirguard._redis").joinpath(name).read_text("utf-8")
    for name in (
        "_records.lua",
        "_walks.lua",
        "_baseline.lua",
        "_policy.lua",
        "_account.lua",
        "_sequence.lua",
        "_sessions.lua",
        "_admit.lua",
    )
)
#: The library and function name carry the code's digest: two versions of nirguard
#: on one Redis (a rolling deploy) each find their own.
FUNCTION: Final = "nirguard_" + hashlib.sha256(BODY.encode("utf-8")).hexdigest()[:16]
LIBRARY: Final = f"#!lua name={FUNCTION}\n{BODY}\nredis.register_function('{FUNCTION}', main)\n"
SCRIPT: Final = f"{BODY}\nreturn main(KEYS, ARGV)\n"
SHA: Final = hashlib.sha1(SCRIPT.encode("utf-8")).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

#: Keys every call names (see ``_admit.lua``).
KEYS: Final = 4

#: Seconds during which a load just sent is taken to be on its way (see Library._load).
LOADING: Final = 0.05

#: Attempts of one call: the call, a load and the call, a switch to scripts, once more.
_ATTEMPTS: Final = 4


@dataclass(frozen=True, slots=True)
class Call:
    """One call of the library: its keys and arguments, and the same arguments with the
    policy's text, sent instead when the server does not know the policy's digest."""

    keys: tuple[str, ...]
    args: tuple[str | bytes, ...]
    full: tuple[str | bytes, ...]


def _missing(error: Exception) -> str | None:
    """What an error reply says the server lacks: ``"function"`` (our library),
    ``"functions"`` (Functions altogether: Redis < 7), ``"script"`` (our script in its
    cache), ``"policy"`` (the policy's digest); ``None`` when it lacks nothing."""
    message = str(error)
    lowered = message.lower()
    if "function not found" in lowered:
        return "function"
    if "unknown command" in lowered and ("fcall" in lowered or "function" in lowered):
        return "functions"
    if message.startswith("NOSCRIPT") or type(error).__name__ == "NoScriptError":
        return "script"
    if message.startswith("NOPOLICY"):
        return "policy"
    return None


def _loaded(reply: Reply) -> None:
    """Raise a load's error reply, unless another process loaded it first."""
    if isinstance(reply, ReplyError) and "already exists" not in str(reply).lower():
        raise classify(reply)


#: Routes a batch of commands by a key (see :mod:`nirguard._redis.route`).
Routing = Callable[[str, Sequence[Command]], Route]


class Library:
    """Calls ``_admit.lua``: as a Function while the server has them, else as a script."""

    __slots__ = ("_loaded_at", "functions")

    def __init__(self, *, functions: bool = True) -> None:
        self.functions = functions
        self._loaded_at = -LOADING  # when this process last sent a load

    def _load(self, load: Command, call: Call, first: bool) -> list[Command]:
        """A load and the call; only the call again when this process sent a load a moment
        ago (a cold burst of lookups would otherwise send the library once per lookup, and
        the load ahead of them on the connection runs first)."""
        now = time.monotonic()
        if first and now - self._loaded_at < LOADING:
            return [self.command(call, call.full)]
        self._loaded_at = now
        return [load, self.command(call, call.full)]

    def command(self, call: Call, args: tuple[str | bytes, ...]) -> Command:
        """The command that runs ``call`` with ``args``."""
        if self.functions:
            return ("FCALL", FUNCTION, str(len(call.keys)), *call.keys, *args)
        return ("EVALSHA", SHA, str(len(call.keys)), *call.keys, *args)

    def exchange(self, call: Call, routing: Routing) -> Generator[Hop, list[Reply], Reply]:
        """Make ``call``, loading what the server lacks; its reply.

        Raises:
            StoreUnavailable, ConfigurationError: as the reply says
                (:func:`~nirguard._redis.outage.classify`); a bug's error reply as itself.
        """
        replies = yield from routing(call.keys[0], [self.command(call, call.args)])
        return (yield from self.settle(call, routing, replies))

    def settle(
        self, call: Call, routing: Routing, replies: list[Reply]
    ) -> Generator[Hop, list[Reply], Reply]:
        """The reply of ``call``, from the ``replies`` of its first write on: loads what
        the server lacks and makes the call again (see :meth:`exchange`).

        Raises:
            StoreUnavailable, ConfigurationError: as the reply says.
        """
        for attempt in range(_ATTEMPTS):
            for reply in replies[:-1]:
                _loaded(reply)
            reply = replies[-1]
            if not isinstance(reply, ReplyError):
                return reply
            need = _missing(reply)
            if need is None:
                raise classify(reply)
            if need == "functions":
                self.functions = False
                batch = [self.command(call, call.full)]
            elif need == "function":
                batch = self._load(("FUNCTION", "LOAD", LIBRARY), call, attempt == 0)
            elif need == "script":
                batch = self._load(("SCRIPT", "LOAD", SCRIPT), call, attempt == 0)
            else:
                batch = [self.command(call, call.full)]
            if attempt == _ATTEMPTS - 1:
                break
            replies = yield from routing(call.keys[0], batch)
        raise classify(ReplyError("nirguard: the library could not be loaded"))
