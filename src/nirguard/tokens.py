"""Reversible tokens of NIRs, for authorised re-identification.

A token is the deterministic AES-SIV encryption (RFC 5297, cryptography's
``AESSIV``) of the canonical NIR under a per-purpose sub-key:

* sub-key: HKDF-SHA256 (RFC 5869), ikm = key material, no salt,
  info = ``b"nirguard/v1/token/" + purpose.encode("utf-8")``, 64 bytes;
* ciphertext: ``AESSIV(sub-key).encrypt(canonical NIR as ASCII, None)``
  (no associated data: the purpose already separates the keys), 31 bytes;
* token: ``f"{key_id}:{base64url of the ciphertext, without padding}"``.

Only holders of the key can turn a token back into the NIR; every failure
(tampering, unknown or wrong key, wrong purpose, malformed) raises the same
opaque :class:`~nirguard.InvalidToken`.

>>> from nirguard import SecretKey
>>> t = Tokeniser(SecretKey.generate("demo"), purpose="docs")
>>> token = t.tokenise("1 85 05 78 006 084 91")
>>> token.startswith("demo:"), len(token)
(True, 47)
>>> t.tokenise("185057800608491") == token  # deterministic
True
>>> t.detokenise(token)
'185057800608491'
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from nirguard import nir
from nirguard._encoding import b64url_decode, b64url_encode
from nirguard._purpose import PurposeBound
from nirguard.errors import InvalidNIR, InvalidToken
from nirguard.keys import KeyRing, SecretKey

__all__ = ["TOKEN_INFO_PREFIX", "Tokeniser"]

#: HKDF ``info`` prefix of token sub-keys (the purpose follows, UTF-8).
TOKEN_INFO_PREFIX = b"nirguard/v1/token/"
_SUBKEY_BYTES = 64
# 16-byte synthetic IV + 15-byte NIR, in unpadded base64url.
_MAX_TOKEN_BODY = 64


class Tokeniser(PurposeBound):
    """Turn NIRs into reversible tokens for one purpose, and back.

    Sub-keys are derived once here, for every key of the ring.

    Args:
        keys: a :class:`~nirguard.SecretKey`, or a :class:`~nirguard.KeyRing`
            whose current key makes new tokens and whose every key can
            detokenise the tokens it made.
        purpose: what the tokens are for; a non-empty string. A token made
            for one purpose does not detokenise under another.

    Raises:
        InvalidKey: ``keys`` is not a key or ring, or ``purpose`` is not a
            non-empty string.
    """

    __slots__ = ("_current", "_sivs")

    _current: AESSIV
    _sivs: dict[str, AESSIV]

    def __init__(self, keys: SecretKey | KeyRing, *, purpose: str) -> None:
        subkeys = self._bind(keys, purpose, TOKEN_INFO_PREFIX, _SUBKEY_BYTES)
        sivs = {key_id: AESSIV(subkey) for key_id, subkey in subkeys.items()}
        object.__setattr__(self, "_current", sivs[self._ring.current.key_id])
        object.__setattr__(self, "_sivs", sivs)

    def tokenise(self, nir_value: str) -> str:
        """The token of a NIR under the current key (deterministic).

        Args:
            nir_value: a NIR in any spelling :func:`nirguard.nir.validate`
                accepts; it is validated strictly first.

        Returns:
            ``"<key_id>:<base64url>"``.

        Raises:
            InvalidNIR: the value is not a valid NIR.
        """
        canonical = nir.validate(nir_value)
        return self._prefix + b64url_encode(self._current.encrypt(canonical.encode(), None))

    def detokenise(self, token: str) -> str:
        """The canonical NIR a token was made from.

        The token is decrypted with the key it names, if the ring holds it.

        Raises:
            InvalidToken: for every failure: not a string, malformed,
                unknown key id, made under another key or purpose, tampered.
        """
        if not isinstance(token, str):
            raise InvalidToken()
        key_id, sep, body = token.partition(":")
        siv = self._sivs.get(key_id) if sep else None
        if siv is None or len(body) > _MAX_TOKEN_BODY:
            raise InvalidToken()
        data = b64url_decode(body)
        if data is None:
            raise InvalidToken()
        try:
            plain = siv.decrypt(data, None)
        except (InvalidTag, ValueError):
            raise InvalidToken() from None
        try:
            return nir.validate(plain.decode("ascii"))
        except (UnicodeDecodeError, InvalidNIR):  # authentic, but not a NIR
            raise InvalidToken() from None
