"""The Redis protocol as the transports speak it: commands packed as RESP2 arrays,
replies parsed by hiredis, and the *fence* that keeps replies with their callers.

RESP has no request ids: a reply is matched to its command by its position in
the stream. One reply too many (a proxy's duplicate, a late reply after a
timeout) would shift every later reply to the wrong caller. So every write ends
with a fence, ``PING <n>`` (``n`` counts the connection's writes), and the
replies of a write are handed to their callers only once the fence came back at
its place with its number. A fence that does not match means the stream cannot
be trusted: the connection is closed and the write's callers get an outage, never
somebody else's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal, Protocol, TypeAlias

from nirguard._redis.outage import StoreUnavailable, classify
from nirguard.errors import ConfigurationError

__all__ = [
    "closed_after",
    "Command",
    "Reader",
    "Reply",
    "ReplyError",
    "fence",
    "fenced",
    "unfenced",
    "pack",
    "pack_python",
    "reader",
]

#: One command: its name and arguments.
Command: TypeAlias = "tuple[str | bytes, ...]"
#: A reply: a bulk string, an integer, nil, an error reply, or an array of replies.
Reply: TypeAlias = "bytes | int | Exception | list[Reply] | None"


def _reply_error() -> type[Exception]:
    from redis.exceptions import ResponseError

    return ResponseError


#: Error replies are instances of redis-py's ``ResponseError`` (a bug raises as one).
ReplyError: Final = _reply_error()


class Reader(Protocol):
    """hiredis's reader: bytes in, whole replies out (``False``: not enough data yet)."""

    def feed(self, data: bytes, /) -> None: ...

    def gets(self) -> Reply | Literal[False]: ...


def reader() -> Reader:
    """A hiredis reader whose error replies are :data:`ReplyError` values."""
    import hiredis

    made: Reader = hiredis.Reader(replyError=ReplyError)
    return made


def _pack_command() -> Callable[[Command], bytes] | None:
    """hiredis's packer (C; hiredis 2.1 and later), or ``None`` (then :func:`pack_python`)."""
    try:
        import hiredis
    except ModuleNotFoundError:  # pragma: no cover - the redis extra brings it
        return None
    packer: Callable[[Command], bytes] | None = getattr(hiredis, "pack_command", None)
    return packer


_packer: Final = _pack_command()


def pack(commands: Sequence[Command]) -> bytes:
    """Commands as one RESP2 byte string (arrays of bulk strings): packed by hiredis in C
    when it can (a command's ~14 arguments cost ~3 us in Python, ~1 us there), else by
    :func:`pack_python`, byte for byte the same (tests/test_redis_codec.py holds them to it)."""
    packer = _packer
    if packer is None:
        return pack_python(commands)
    if len(commands) == 1:
        return packer(commands[0])
    return b"".join([packer(command) for command in commands])


def pack_python(commands: Sequence[Command]) -> bytes:
    """:func:`pack` in Python (hiredis before 2.1)."""
    parts: list[bytes] = []
    add = parts.append
    for command in commands:
        add(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg.encode("utf-8") if isinstance(arg, str) else arg
            add(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def fence(number: int) -> Command:
    """The fence that closes write number ``number``."""
    return ("PING", b"%d" % number)


def unfenced(reply: Reply) -> Exception:
    """The error for a reply found where a fence should be: the ACL's refusal of the
    fence (a misconfiguration), else a stream that shifted (an outage)."""
    if isinstance(reply, ReplyError):
        error = classify(reply)
        if isinstance(error, ConfigurationError):
            return error  # e.g. an ACL that forbids PING, a login that failed
    return StoreUnavailable("nirguard: the store sent a reply nobody asked for")


def closed_after(replies: list[Reply]) -> Exception:
    """The error for a connection the server closed after ``replies``: the last words of
    a server that refuses an unauthenticated client are a misconfiguration."""
    for reply in replies:
        if isinstance(reply, ReplyError):
            error = classify(reply)
            if isinstance(error, ConfigurationError):
                return error
    return StoreUnavailable("nirguard: the store closed the connection")


def fenced(replies: list[Reply], number: int) -> list[Reply]:
    """The replies of a write without its fence; an error if the fence is not in place.

    Raises:
        StoreUnavailable: the last reply is not fence ``number``: the stream shifted.
        ConfigurationError: the fence was refused (an ACL, a failed login).
    """
    if not replies or replies[-1] != b"%d" % number:
        raise unfenced(replies[-1] if replies else None)
    return replies[:-1]
