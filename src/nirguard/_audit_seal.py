"""Sealing audit records: the audit key, the canonical form, and one writer's MAC chain.

Internal to nirguard: :mod:`nirguard.audit_chain` is the public face. A sealed
record is the record itself plus one ``seal`` object::

    {"actor": null, ..., "time": "...", "seal": {"key": "<key id>", "mac": "<MAC>",
     "prev": "<MAC of seq 6>", "seq": 7, "v": 1, "writer": "<writer id>"}}

``mac`` is HMAC-SHA-256 (truncated to 128 bits, unpadded base64url) under a
sub-key of the audit key (HKDF-SHA-256, ``info`` :data:`SUBKEY_INFO`), over
:data:`DOMAIN`, the canonical JSON of the record (every name but ``seal``), a
newline and the canonical JSON of the seal without ``mac``: every field of the
record and of the seal is covered, the previous record's MAC included, so a
writer's records form a chain (RFC 5848 syslog-sign, journald's sealing). The
first record of a chain has ``seq`` 1 and ``prev`` ``""``.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import re
import secrets
import socket
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, cast

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from nirguard._encoding import b64url_decode, b64url_encode
from nirguard._sealed import derive_subkey
from nirguard.errors import InvalidKey
from nirguard.keys import KEY_TEXT_PREFIX, SecretKey

__all__ = [
    "AUDIT_KEY_TEXT_PREFIX",
    "DOMAIN",
    "SEAL_VERSION",
    "SUBKEY_INFO",
    "WRITER_RE",
    "AuditChain",
    "AuditKey",
    "canonical",
    "mac_ok",
    "material_of",
    "parse_line",
    "seal_of",
    "time_of",
]

#: Prefix of an audit key's text form (a pseudonym key's is ``nirguard-key:v1:``).
AUDIT_KEY_TEXT_PREFIX: Final = "nirguard-audit-key:v1:"
#: HKDF ``info`` of the sub-key that computes the MACs.
SUBKEY_INFO: Final = b"nirguard/audit-chain/v1"
#: Bytes hashed before the canonical record (domain separation).
DOMAIN: Final = b"nirguard-audit-seal:v1\n"
#: The seal format's version (``seal.v``).
SEAL_VERSION: Final = 1
#: Bytes of the MAC kept (128 bits).
_TAG_BYTES: Final = 16
#: What a writer id is made of (``<name>-p<pid>-r<8 random hex digits>``).
WRITER_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,40}")
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_CANONICAL: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
)
_SEAL_FIELDS: Final = frozenset({"v", "key", "writer", "seq", "prev", "mac"})


def canonical(obj: Any) -> bytes:
    """The canonical JSON of ``obj`` (sorted keys, no spaces, ASCII): what the MAC covers.

    >>> canonical({"b": 1, "a": "é"})
    b'{"a":"\\\\u00e9","b":1}'

    Raises:
        TypeError: ``obj`` holds something JSON cannot write.
        ValueError: ``obj`` holds a NaN or an infinity.
    """
    return _CANONICAL.encode(obj).encode("ascii")


def material_of(key: SecretKey) -> bytes:
    """The material of any key, through its text form (to tell two keys' material apart)."""
    return b64url_decode(key.to_text().rsplit(":", 1)[1]) or b""


class AuditKey(SecretKey):
    """The audit key: seals the audit trail, and only that.

    A :class:`~nirguard.keys.SecretKey` of its own kind, with its own text form
    ``nirguard-audit-key:v1:<key_id>:<material>`` (``nirguard audit keygen``), so that
    the pseudonym key (``nirguard-key:v1:...``) is refused where an audit key is
    expected. The key id is written into every seal: keep retired keys to verify
    old trails. ``repr`` shows the key id only; pickling raises :class:`TypeError`.

    >>> key = AuditKey.generate("audit-2026")
    >>> key
    AuditKey(key_id='audit-2026')
    >>> AuditKey.from_text(key.to_text()) == key
    True

    Raises:
        InvalidKey: as :class:`~nirguard.keys.SecretKey`.
    """

    __slots__ = ("_hmac",)

    _hmac: crypto_hmac.HMAC

    def __init__(self, material: bytes, key_id: str) -> None:
        super().__init__(material, key_id)
        subkey = derive_subkey(self, SUBKEY_INFO, 32)
        object.__setattr__(self, "_hmac", crypto_hmac.HMAC(subkey, hashes.SHA256()))

    @classmethod
    def generate(cls, key_id: str | None = None) -> AuditKey:
        """Make a new random audit key (as :meth:`SecretKey.generate <nirguard.SecretKey.generate>`)."""
        return cast(AuditKey, super().generate(key_id))

    @classmethod
    def from_env(cls, var: str) -> AuditKey:
        """Read an audit key's text form from the environment variable ``var``.

        Raises:
            InvalidKey: the variable is not set, or holds no audit key's text form.
        """
        return cast(AuditKey, super().from_env(var))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AuditKey:
        """Read an audit key's text form from a file (``nirguard audit keygen -o``).

        Warns:
            InsecureKeyFileWarning: the file's group or others can use it.

        Raises:
            InvalidKey: the file cannot be read, or holds no audit key's text form.
        """
        return cast(AuditKey, super().from_file(path))

    @classmethod
    def from_text(cls, text: str) -> AuditKey:
        """Read the text form ``nirguard-audit-key:v1:<key_id>:<material>``.

        Raises:
            InvalidKey: not an audit key's text form (code ``key_wrong_kind`` for a
                pseudonym key's); the message never holds the text.
        """
        if not isinstance(text, str):
            raise InvalidKey("invalid audit key text: expected a string")
        text = text.strip()
        if text.startswith(KEY_TEXT_PREFIX):
            raise InvalidKey(
                "this is a pseudonym key, not an audit key: the audit trail needs a key of "
                "its own (make one with: nirguard audit keygen)",
                code="key_wrong_kind",
            )
        if not text.startswith(AUDIT_KEY_TEXT_PREFIX):
            raise InvalidKey(
                "invalid audit key text: expected 'nirguard-audit-key:v1:<key_id>:<material>'"
            )
        key_id, sep, encoded = text[len(AUDIT_KEY_TEXT_PREFIX) :].partition(":")
        material = b64url_decode(encoded) if sep else None
        if material is None:
            raise InvalidKey("invalid audit key text: the material is not unpadded base64url")
        return cls(material, key_id)

    def to_text(self) -> str:
        """The text form, **including the secret material**: store it like a password."""
        return AUDIT_KEY_TEXT_PREFIX + super().to_text()[len(KEY_TEXT_PREFIX) :]

    def tag(self, data: bytes) -> str:
        """The MAC of ``data`` under this key's sealing sub-key (22 characters)."""
        mac = self._hmac.copy()
        mac.update(data)
        return b64url_encode(mac.finalize()[:_TAG_BYTES])

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.key_id!r})"

    __str__ = __repr__


def _header(seal: Mapping[str, Any], mac: str | None = None) -> str:
    """``canonical(seal)`` (with ``mac`` when given), written directly: its texts are of
    the alphabets of key ids, writer ids and base64url, which JSON writes as they are."""
    tag = "" if mac is None else f'"mac":"{mac}",'
    return (
        f'{{"key":"{seal["key"]}",{tag}"prev":"{seal["prev"]}","seq":{seal["seq"]},'
        f'"v":{seal["v"]},"writer":"{seal["writer"]}"}}'
    )


def _default_name() -> str:
    return _UNSAFE.sub("_", socket.gethostname())[:40] or "nirguard"


class AuditChain:
    """One writer's MAC chain: seals records in order (thread-safe).

    The writer id is ``<writer>-p<pid>-r<8 random hex digits>``: each process, and
    each chain, has its own, so that several workers can append to one file. A
    forked child starts a chain of its own at its first record.

    Args:
        key: the audit key (never the pseudonym key).
        writer: a name for the writer (``A-Z a-z 0-9 . _ -``, at most 40);
            default: the host name.

    Raises:
        InvalidKey: ``key`` is not an :class:`AuditKey`.
        ValueError: ``writer`` is not of the allowed form.
    """

    __slots__ = ("_key", "_lock", "_name", "_pid", "_prev", "_seq", "_writer")

    def __init__(self, key: AuditKey, *, writer: str | None = None) -> None:
        if not isinstance(key, AuditKey):
            raise InvalidKey(
                "the audit trail needs an AuditKey (nirguard audit keygen), never the "
                "pseudonym key",
                code="key_wrong_kind",
            )
        name = _default_name() if writer is None else writer
        if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
            raise ValueError("writer must be 1 to 40 characters among A-Z a-z 0-9 . _ -")
        self._key = key
        self._name = name
        self._lock = threading.Lock()
        self._restart()

    def _restart(self) -> None:
        self._pid = os.getpid()
        self._writer = f"{self._name}-p{self._pid}-r{secrets.token_hex(4)}"
        self._seq = 0
        self._prev = ""

    @property
    def key_id(self) -> str:
        """The id of the audit key that seals."""
        return self._key.key_id

    @property
    def writer(self) -> str:
        """The writer id of the current chain."""
        return self._writer

    @property
    def fresh(self) -> bool:
        """Whether the next record starts a chain (none sealed yet, or a forked child)."""
        return self._seq == 0 or self._pid != os.getpid()

    def restart(self) -> None:
        """End this chain: the next record starts a new one under a new writer id."""
        with self._lock:
            self._restart()

    def seal(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` with its ``seal``: the next link of this writer's chain.

        Raises:
            ValueError: ``record`` already has a ``seal``, or holds a NaN.
            TypeError: ``record`` holds something JSON cannot write.
        """
        _, seal = self._link(record)
        return {**record, "seal": seal}

    def seal_line(self, record: Mapping[str, Any]) -> str:
        """The sealed record as one JSON line (no newline), written once: the sink's call.

        Raises:
            ValueError: ``record`` already has a ``seal``, or holds a NaN.
            TypeError: ``record`` holds something JSON cannot write.
        """
        body, seal = self._link(record)
        text = body.decode("ascii")
        return f'{text[:-1]}{"," if len(text) > 2 else ""}"seal":{_header(seal, seal["mac"])}}}'

    def _link(self, record: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
        if "seal" in record:
            raise ValueError("the record is sealed already")
        body = canonical(record)
        with self._lock:
            if self._pid != os.getpid():
                self._restart()
            seal = {
                "v": SEAL_VERSION,
                "key": self._key.key_id,
                "writer": self._writer,
                "seq": self._seq + 1,
                "prev": self._prev,
            }
            mac = self._key.tag(DOMAIN + body + b"\n" + _header(seal).encode("ascii"))
            self._seq += 1
            self._prev = seal["mac"] = mac
        return body, seal

    def __repr__(self) -> str:
        return f"AuditChain(key_id={self._key.key_id!r}, writer={self._writer!r})"

    def __reduce__(self) -> Any:
        raise TypeError("AuditChain objects cannot be pickled: they hold a secret key")


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise ValueError("duplicate name")  # two readers could read two records
        obj[name] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError("not JSON")


def parse_line(line: str) -> dict[str, Any] | None:
    """The JSON object of ``line`` (duplicate names and NaN refused), or ``None``."""
    try:
        data = json.loads(line, object_pairs_hook=_strict_object, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def seal_of(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The well-formed ``seal`` of a parsed line, or ``None``."""
    seal = data.get("seal")
    if not isinstance(seal, dict) or set(seal) != _SEAL_FIELDS or seal["v"] != SEAL_VERSION:
        return None
    seq, writer = seal["seq"], seal["writer"]
    texts = (seal["key"], writer, seal["prev"], seal["mac"])
    if not all(isinstance(text, str) and len(text) <= 64 for text in texts):
        return None
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**53:
        return None
    if WRITER_RE.fullmatch(writer) is None or WRITER_RE.fullmatch(seal["key"]) is None:
        return None
    return seal


def mac_ok(data: Mapping[str, Any], seal: Mapping[str, Any], key: AuditKey) -> bool:
    """Whether ``seal`` is the MAC of the parsed line ``data`` under ``key``."""
    header = {name: seal[name] for name in ("v", "key", "writer", "seq", "prev")}
    record = {name: value for name, value in data.items() if name != "seal"}
    try:
        body = canonical(record) + b"\n" + canonical(header)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(key.tag(DOMAIN + body), seal["mac"])


def time_of(value: object) -> float | None:
    """POSIX seconds of a record's time (ISO 8601 with a zone, or a number), or ``None``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None
