"""Package-internal: the base of the objects that derive sub-keys from a key ring
for one purpose (:class:`~nirguard.Pseudonymiser`, :class:`~nirguard.Tokeniser`).

The purpose is a non-empty string; it goes, UTF-8 encoded, after a fixed
prefix into the HKDF ``info`` of every sub-key, so that two purposes never
share a sub-key.

>>> check_purpose("guard/cohort")
b'guard/cohort'
>>> check_purpose("")
Traceback (most recent call last):
...
nirguard.errors.InvalidKey: invalid purpose: expected a non-empty string
"""

from __future__ import annotations

from nirguard._sealed import Sealed, derive_subkey
from nirguard.errors import InvalidKey
from nirguard.keys import KeyRing, SecretKey

__all__ = ["PurposeBound", "check_purpose"]


def check_purpose(purpose: object) -> bytes:
    """The UTF-8 bytes of a purpose string, which must be a non-empty ``str``.

    Raises:
        InvalidKey: ``purpose`` is not a non-empty string encodable as UTF-8
            (code ``purpose_invalid``).
    """
    if not isinstance(purpose, str) or not purpose:
        raise InvalidKey("invalid purpose: expected a non-empty string", code="purpose_invalid")
    try:
        return purpose.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(
            "invalid purpose: not encodable as UTF-8", code="purpose_invalid"
        ) from None


class PurposeBound(Sealed):
    """Base of the objects that derive sub-keys from a ring for one purpose.

    Holds the ring, the purpose and the current key's output prefix; the
    subclass builds its primitives from the sub-keys :meth:`_bind` returns.
    """

    __slots__ = ("_prefix", "_purpose", "_ring")

    _ring: KeyRing
    _purpose: str
    _prefix: str

    def _bind(
        self, keys: SecretKey | KeyRing, purpose: str, info_prefix: bytes, length: int
    ) -> dict[str, bytes]:
        """Set the ring, purpose and prefix; return each key's sub-key for the purpose.

        The sub-keys are HKDF-SHA256 of each key's material with
        ``info = info_prefix + purpose`` (UTF-8), ``length`` bytes, by key id.

        Raises:
            InvalidKey: ``keys`` is not a key or ring, or ``purpose`` is not a
                non-empty string.
        """
        ring = KeyRing.of(keys)
        info = info_prefix + check_purpose(purpose)
        object.__setattr__(self, "_ring", ring)
        object.__setattr__(self, "_purpose", purpose)
        object.__setattr__(self, "_prefix", ring.current.key_id + ":")
        return {key.key_id: derive_subkey(key, info, length) for key in ring}

    @property
    def purpose(self) -> str:
        """The purpose string the sub-keys were derived for."""
        return self._purpose

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the keys in use, current first."""
        return self._ring.key_ids

    def __repr__(self) -> str:
        return f"{type(self).__name__}(purpose={self._purpose!r}, key_ids={self._ring.key_ids!r})"

    __str__ = __repr__
