"""Secret keys for pseudonyms and tokens, and key rings for rotation.

A :class:`SecretKey` is at least 32 bytes of secret material plus a public
*key id* (``[A-Za-z0-9_-]{1,32}``). The key id is written into every
pseudonym and token, so that a :class:`KeyRing` can tell which key made
them after a rotation.

The material never leaves the object by accident: ``repr``, ``str``,
f-strings and logging show the key id only, pickling raises
:class:`TypeError`, and ``copy.copy``/``copy.deepcopy`` return the same
(immutable) object. :meth:`SecretKey.to_text` is the one deliberate way
out, and writes the text form read back by :meth:`SecretKey.from_text`,
:meth:`SecretKey.from_env` and :meth:`SecretKey.from_file`::

    nirguard-key:v1:<key_id>:<material in base64url, no padding>

>>> key = SecretKey.generate("demo-2026")
>>> key
SecretKey(key_id='demo-2026')
>>> SecretKey.from_text(key.to_text()) == key
True
>>> KeyRing(SecretKey.generate("k2"), key).key_ids
('k2', 'demo-2026')
"""

from __future__ import annotations

import datetime
import hmac
import os
import re
import secrets
import stat
import warnings
from collections.abc import Iterator

from nirguard._encoding import b64url_decode, b64url_encode
from nirguard._sealed import KeyMaterial, Sealed
from nirguard.errors import InsecureKeyFileWarning, InvalidKey

__all__ = ["KEY_TEXT_PREFIX", "MIN_KEY_BYTES", "KeyRing", "SecretKey"]

#: Fewest bytes of key material accepted (256 bits).
MIN_KEY_BYTES = 32
#: Bytes of material made by :meth:`SecretKey.generate`.
_GENERATED_KEY_BYTES = 32
#: Prefix of the versioned text form.
KEY_TEXT_PREFIX = "nirguard-key:v1:"

_KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")


class SecretKey(KeyMaterial):
    """Secret key material with a public key id.

    Make new keys with :meth:`generate` (or ``nirguard keygen``) and read
    them back with :meth:`from_env` or :meth:`from_file`; build one from bytes
    only for material that already comes from a secret store.

    Args:
        material: the secret, at least 32 bytes (``bytes`` or ``bytearray``;
            a private copy is kept).
        key_id: a public name for the key, 1 to 32 characters among
            ``A-Z a-z 0-9 _ -``; it appears in every pseudonym and token.

    Raises:
        InvalidKey: the material is not bytes or is shorter than 32 bytes
            (code ``key_invalid``), or is one byte repeated, such as
            ``bytes(32)`` (code ``key_weak``: a placeholder, never a
            secret), or the key id is not a string of the allowed form.
    """

    __slots__ = ("_key_id",)  # and KeyMaterial's _material

    _key_id: str

    def __init__(self, material: bytes, key_id: str) -> None:
        if not isinstance(material, (bytes, bytearray)):
            raise InvalidKey("invalid key: the material must be bytes")
        if len(material) < MIN_KEY_BYTES:
            raise InvalidKey(f"invalid key: the material must be at least {MIN_KEY_BYTES} bytes")
        if material.count(material[0]) == len(material):
            raise InvalidKey(
                "invalid key: the material is one repeated byte, not a secret "
                "(use SecretKey.generate())",
                code="key_weak",
            )
        if not isinstance(key_id, str) or _KEY_ID_RE.fullmatch(key_id) is None:
            raise InvalidKey("invalid key id: expected 1 to 32 characters among A-Z a-z 0-9 _ -")
        object.__setattr__(self, "_material", bytes(material))
        object.__setattr__(self, "_key_id", key_id)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def generate(cls, key_id: str | None = None) -> SecretKey:
        """Make a new random key (32 bytes from :mod:`secrets`).

        Args:
            key_id: the key id; by default ``k<YYYYMMDD>-<6 random hex digits>``
                (UTC date), which sorts by creation date.

        Raises:
            InvalidKey: the key id is not of the allowed form.
        """
        if key_id is None:
            today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
            key_id = f"k{today}-{secrets.token_hex(3)}"
        return cls(secrets.token_bytes(_GENERATED_KEY_BYTES), key_id)

    @classmethod
    def from_text(cls, text: str) -> SecretKey:
        """Read the text form ``nirguard-key:v1:<key_id>:<base64url material>``.

        Surrounding whitespace (a trailing newline) is ignored.

        Raises:
            InvalidKey: the text is not a valid key text form. The message
                never contains the text.
        """
        if not isinstance(text, str):
            raise InvalidKey("invalid key text: expected a string")
        text = text.strip()
        if not text.startswith(KEY_TEXT_PREFIX):
            raise InvalidKey("invalid key text: expected 'nirguard-key:v1:<key_id>:<material>'")
        key_id, sep, encoded = text[len(KEY_TEXT_PREFIX) :].partition(":")
        if not sep:
            raise InvalidKey("invalid key text: expected 'nirguard-key:v1:<key_id>:<material>'")
        material = b64url_decode(encoded)
        if material is None:
            raise InvalidKey("invalid key text: the material is not unpadded base64url")
        return cls(material, key_id)

    @classmethod
    def from_env(cls, var: str) -> SecretKey:
        """Read a key in text form from the environment variable ``var``.

        Raises:
            InvalidKey: the variable is not set, or does not hold a valid
                key text form.
        """
        value = os.environ.get(var)
        if value is None:
            raise InvalidKey(f"environment variable {var} is not set", code="key_missing")
        return cls.from_text(value)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SecretKey:
        """Read a key in text form from a file (as written by ``nirguard keygen``).

        Like ssh with a private key, this checks who else can use the file:
        a regular file that its group or others can read, write or execute
        (any of the mode bits ``0o077``, after following symlinks) still gives
        the key, with an :class:`~nirguard.errors.InsecureKeyFileWarning`.
        Not checked on Windows, nor for pipes and devices.

        Warns:
            InsecureKeyFileWarning: the file's mode gives its group or
                others access (``chmod 600`` it).

        Raises:
            InvalidKey: the file cannot be read, or does not hold a valid
                key text form.
        """
        try:
            with open(path, encoding="utf-8") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                text = handle.read(4096)
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise InvalidKey(
                f"cannot read key file {os.fspath(path)!r}: {reason}", code="key_missing"
            ) from None
        key = cls.from_text(text)
        if os.name != "nt" and stat.S_ISREG(mode) and mode & 0o077:
            warnings.warn(
                InsecureKeyFileWarning(
                    f"key file {os.fspath(path)!r} is open to its group or others "
                    f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it"
                ),
                stacklevel=2,
            )
        return key

    # -- use --------------------------------------------------------------------------------

    @property
    def key_id(self) -> str:
        """The public key id."""
        return self._key_id

    def to_text(self) -> str:
        """The text form, **including the secret material**: store it like a password."""
        return f"{KEY_TEXT_PREFIX}{self._key_id}:{b64url_encode(self._material)}"

    # -- hygiene ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"SecretKey(key_id={self._key_id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        same_material = hmac.compare_digest(self._material, other._material)
        return same_material and self._key_id == other._key_id

    def __hash__(self) -> int:
        return hash((SecretKey, self._key_id))


class KeyRing(Sealed):
    """The current key, which makes new pseudonyms and tokens, and previous
    keys, which are still recognised (:meth:`Pseudonymiser.matches
    <nirguard.Pseudonymiser.matches>`, :meth:`Tokeniser.detokenise
    <nirguard.Tokeniser.detokenise>`).

    Args:
        current: the key used for everything new.
        *previous: retired keys still accepted, newest first.

    Raises:
        InvalidKey: an argument is not a :class:`SecretKey`, or two keys
            share a key id.
    """

    __slots__ = ("_by_id", "_keys")

    _keys: tuple[SecretKey, ...]
    _by_id: dict[str, SecretKey]

    def __init__(self, current: SecretKey, *previous: SecretKey) -> None:
        keys = (current, *previous)
        by_id: dict[str, SecretKey] = {}
        for key in keys:
            if not isinstance(key, SecretKey):
                raise InvalidKey("invalid key ring: every key must be a SecretKey")
            if key.key_id in by_id:
                raise InvalidKey(
                    f"invalid key ring: key id {key.key_id!r} appears twice", code="key_duplicate"
                )
            by_id[key.key_id] = key
        object.__setattr__(self, "_keys", keys)
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def of(cls, keys: SecretKey | KeyRing) -> KeyRing:
        """``keys`` itself if it is a ring, else a ring of that one key.

        Raises:
            InvalidKey: ``keys`` is neither a :class:`SecretKey` nor a :class:`KeyRing`.
        """
        if isinstance(keys, KeyRing):
            return keys
        if isinstance(keys, SecretKey):
            return cls(keys)
        raise InvalidKey("invalid keys: expected a SecretKey or a KeyRing")

    @property
    def current(self) -> SecretKey:
        """The key that makes new pseudonyms and tokens."""
        return self._keys[0]

    @property
    def previous(self) -> tuple[SecretKey, ...]:
        """The retired keys still accepted, newest first."""
        return self._keys[1:]

    @property
    def keys(self) -> tuple[SecretKey, ...]:
        """Every key, current first."""
        return self._keys

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, current first."""
        return tuple(key.key_id for key in self._keys)

    def get(self, key_id: str) -> SecretKey | None:
        """The key with this id, or ``None``."""
        return self._by_id.get(key_id) if isinstance(key_id, str) else None

    def __getitem__(self, key_id: str) -> SecretKey:
        key = self.get(key_id)
        if key is None:
            raise KeyError(key_id)
        return key

    def __contains__(self, key_id: object) -> bool:
        return isinstance(key_id, str) and key_id in self._by_id

    def __iter__(self) -> Iterator[SecretKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing(current={self.current.key_id!r}, previous={self.key_ids[1:]!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyRing):
            return NotImplemented
        return len(self._keys) == len(other._keys) and all(
            [a == b for a, b in zip(self._keys, other._keys, strict=True)]
        )

    def __hash__(self) -> int:
        return hash((KeyRing, self.key_ids))
