"""Keyed pseudonyms of NIRs: HMAC-SHA256 under a per-purpose sub-key.

An unkeyed hash of a NIR is not a pseudonym: the ~8.6e10 plausible NIRs are
hashed in hours. Only a secret key held apart from the data protects them.
The construction is public and versioned (``docs/pseudonymisation.md``), so
that SQL, Java or Spark pipelines can reproduce it:

* canonical NIR: the 15-character output of :func:`nirguard.nir.validate`,
  as ASCII bytes;
* sub-key: HKDF-SHA256 (RFC 5869), ikm = key material, no salt,
  info = ``b"nirguard/v1/pseudonym/" + purpose.encode("utf-8")``, 32 bytes;
* pseudonym: ``f"{key_id}:{digest}"`` where digest is the first 16 bytes of
  HMAC-SHA256(sub-key, canonical NIR) in lowercase hex (32 characters).

The purpose separates pseudonym spaces: the same NIR gets unrelated
pseudonyms in two databases or for two recipients (CSP R1461-7).

>>> from nirguard import SecretKey
>>> p = Pseudonymiser(SecretKey.generate("demo"), purpose="docs")
>>> alias = p.pseudonymise("1 85 05 78 006 084 91")
>>> alias.startswith("demo:"), len(alias)
(True, 37)
>>> p.pseudonymise("185057800608491") == alias  # one person, one pseudonym
True
>>> p.matches("185057800608491", alias)
True
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from nirguard import nir
from nirguard._nir_rules import fast_canonicals
from nirguard._purpose import PurposeBound, check_purpose
from nirguard.errors import InvalidNIR
from nirguard.keys import KeyRing, SecretKey

__all__ = ["PSEUDONYM_INFO_PREFIX", "Pseudonymiser"]

#: HKDF ``info`` prefix of pseudonym sub-keys (the purpose follows, UTF-8).
PSEUDONYM_INFO_PREFIX = b"nirguard/v1/pseudonym/"
_SUBKEY_BYTES = 32
_DIGEST_BYTES = 16


class Pseudonymiser(PurposeBound):
    """Make and check keyed pseudonyms of NIRs for one purpose.

    Sub-keys are derived once here, for every key of the ring.

    Args:
        keys: a :class:`~nirguard.SecretKey`, or a :class:`~nirguard.KeyRing`
            whose current key makes new pseudonyms and whose every key is
            recognised by :meth:`matches`.
        purpose: what the pseudonyms are for (a database, a recipient, an
            export); a non-empty string. Different purposes give unrelated
            pseudonyms.

    Raises:
        InvalidKey: ``keys`` is not a key or ring, or ``purpose`` is not a
            non-empty string.
    """

    __slots__ = ("_current", "_hmacs")

    _hmacs: dict[str, crypto_hmac.HMAC]
    #: the current key's pre-keyed HMAC (``_hmacs[_ring.current.key_id]``): three
    #: attribute loads and a dict lookup fewer per pseudonym, six pseudonyms a lookup
    _current: crypto_hmac.HMAC

    def __init__(self, keys: SecretKey | KeyRing, *, purpose: str) -> None:
        subkeys = self._bind(keys, purpose, PSEUDONYM_INFO_PREFIX, _SUBKEY_BYTES)
        hmacs = {
            key_id: crypto_hmac.HMAC(subkey, hashes.SHA256()) for key_id, subkey in subkeys.items()
        }
        object.__setattr__(self, "_hmacs", hmacs)
        object.__setattr__(self, "_current", hmacs[self._ring.current.key_id])

    def pseudonymise(self, nir_value: str) -> str:
        """The pseudonym of a NIR under the current key.

        Args:
            nir_value: a NIR in any spelling :func:`nirguard.nir.validate`
                accepts; it is validated strictly first.

        Returns:
            ``"<key_id>:<32 lowercase hex digits>"``.

        Raises:
            InvalidNIR: the value is not a valid NIR; garbage is never
                pseudonymised.
        """
        return self.pseudonymise_canonical(nir.validate(nir_value))

    def pseudonymise_many(self, nirs: Iterable[str]) -> list[str]:
        """The pseudonyms of many NIRs, in order; same results as
        :meth:`pseudonymise`, faster.

        Raises:
            InvalidNIR: for the first invalid value (nothing is returned).
        """
        values = nirs if isinstance(nirs, list) else list(nirs)
        out = pseudonymise_batch(self, values)
        if None in out:
            nir.validate(values[out.index(None)])  # raises the InvalidNIR of the first bad value
            raise AssertionError("unreachable")  # pragma: no cover
        return out  # type: ignore[return-value]

    def pseudonymise_canonical(self, canonical: str) -> str:
        """Internal: the pseudonym of a string that is **already** canonical.

        No validation at all: ``canonical`` must be the output of
        :func:`nirguard.nir.validate` (or, for a :meth:`derive`-d purpose,
        another string the caller has canonicalised, such as the guard's
        10-character cohort prefix). Anything else gives a pseudonym that no
        other spelling of the same number will ever match.

        Raises:
            TypeError: ``canonical`` is not a string.
        """
        if type(canonical) is not str:
            raise TypeError("pseudonymise_canonical expects a canonical string")
        mac = self._current.copy()
        mac.update(canonical.encode())
        return self._prefix + mac.finalize()[:_DIGEST_BYTES].hex()

    def matches(self, nir_value: str, pseudonym: str) -> bool:
        """Whether ``pseudonym`` was made from this NIR, for this purpose,
        with any key of the ring (compared in constant time).

        Args:
            nir_value: the NIR, in any accepted spelling.
            pseudonym: the pseudonym to check; anything malformed (wrong
                type, unknown key id, wrong length) gives ``False``.

        Raises:
            InvalidNIR: ``nir_value`` is not a valid NIR.
        """
        canonical = nir.validate(nir_value)
        if not isinstance(pseudonym, str) or not pseudonym.isascii():
            return False
        key_id, sep, _digest = pseudonym.partition(":")
        base = self._hmacs.get(key_id) if sep else None
        if base is None:
            return False
        mac = base.copy()
        mac.update(canonical.encode())
        expected = f"{key_id}:{mac.finalize()[:_DIGEST_BYTES].hex()}"
        return hmac.compare_digest(expected, pseudonym)

    def derive(self, purpose_suffix: str) -> Pseudonymiser:
        """A pseudonymiser with the same keys for purpose
        ``f"{purpose}/{purpose_suffix}"``.

        Raises:
            InvalidKey: ``purpose_suffix`` is not a non-empty string.
        """
        check_purpose(purpose_suffix)
        return Pseudonymiser(self._ring, purpose=f"{self._purpose}/{purpose_suffix}")

    def _fingerprints_canonical(self, canonicals: Iterable[bytes | None], absent: bytes) -> bytes:
        """:func:`fingerprints_canonical`: one copy of the pre-keyed HMAC per string."""
        copy = self._current.copy
        out = []
        for canonical in canonicals:
            if canonical is None:
                out.append(absent)
                continue
            mac = copy()
            mac.update(canonical)
            out.append(mac.finalize()[_DIGEST_BYTES - 6 : _DIGEST_BYTES])
        return b"".join(out)

    def _pseudonymise_canonicals(
        self, canonicals: list[str | None], complete: bool
    ) -> list[str | None]:
        """Pass 2 of :func:`pseudonymise_batch`: one copy of the pre-keyed HMAC per
        canonical string, ``None`` kept where there is none (``complete``: none is)."""
        copy = self._current.copy
        prefix = self._prefix
        out: list[str | None] = []
        append = out.append
        if complete:
            for canonical in canonicals:
                mac = copy()
                mac.update(canonical.encode())  # type: ignore[union-attr]
                append(prefix + mac.finalize()[:_DIGEST_BYTES].hex())
        else:
            for canonical in canonicals:
                if canonical is None:
                    append(None)
                    continue
                mac = copy()
                mac.update(canonical.encode())
                append(prefix + mac.finalize()[:_DIGEST_BYTES].hex())
        return out


def fingerprints_canonical(
    pseudonymiser: Pseudonymiser, canonicals: Iterable[bytes | None], absent: bytes
) -> bytes:
    """Package-internal (``nirguard._sequence``): for each canonical string (its ASCII
    bytes: the caller builds them so, with no str on the way), the 6 bytes
    that stand for its pseudonym under ``pseudonymiser``'s current key in a record
    (:func:`nirguard._engine.fingerprint`: the end of its digest), ``absent`` for
    ``None``, concatenated; no hex on the way."""
    return pseudonymiser._fingerprints_canonical(canonicals, absent)


def pseudonymise_batch(pseudonymiser: Pseudonymiser, values: list[str]) -> list[str | None]:
    """Package-internal: the pseudonym of each value under ``pseudonymiser``'s
    current key, or ``None`` where the value is not a valid NIR (strict).

    The hot path of :meth:`Pseudonymiser.pseudonymise_many` and of the CSV
    commands (``nirguard._csv_blocks``), in two passes (measured faster than
    one: the regex engine and the HMAC code do not evict each other from the
    CPU caches):

    1. ``nirguard._nir_rules.fast_canonicals`` (validate's strict regex on
       all-digit input, then the key); what it leaves undecided goes through
       :func:`nirguard.nir.validate` itself;
    2. one copy of the pre-keyed HMAC per item.
    """
    canonicals = fast_canonicals(values)
    complete = True
    if None in canonicals:
        validate = nir.validate
        for index, canonical in enumerate(canonicals):
            if canonical is None:
                try:
                    canonicals[index] = validate(values[index])
                except InvalidNIR:
                    complete = False
    return pseudonymiser._pseudonymise_canonicals(canonicals, complete)
