"""The conversion of one CSV column's values, in batches: pseudonyms, tokens or NIRs.

``None`` in a batch's result marks a value that does not convert (an invalid
NIR, an invalid token): ``--on-invalid`` decides what becomes of its row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nirguard import nir
from nirguard._encoding import ASCII_WS

__all__ = ["Batch", "converter", "reason"]

Batch = Callable[[list[str]], list[str | None]]


def converter(mode: str, key_texts: tuple[str, ...], purpose: str) -> Batch:
    """The batch conversion of ``mode`` (``pseudonymise``, ``tokenise``, ``detokenise``).

    Raises:
        InvalidKey: a key text or the purpose is refused.
    """
    from nirguard.keys import KeyRing, SecretKey

    ring = KeyRing(*(SecretKey.from_text(text) for text in key_texts))
    if mode == "pseudonymise":
        from nirguard.pseudonym import Pseudonymiser, pseudonymise_batch

        pseudonymiser = Pseudonymiser(ring, purpose=purpose)
        return lambda values: pseudonymise_batch(pseudonymiser, values)
    from nirguard.tokens import Tokeniser

    if mode == "tokenise":
        return _tokenise_batch(Tokeniser(ring, purpose=purpose))
    return _detokenise_batch(Tokeniser(ring, purpose=purpose))


def reason(mode: str, value: str) -> str:
    """Why ``value`` does not convert, for an error message (never the value)."""
    if mode == "detokenise":
        return "invalid token"
    try:
        nir.validate(value)
    except nir.InvalidNIR as exc:
        return f"{exc} [{exc.code}]"
    return "invalid value"  # pragma: no cover


def _tokenise_batch(tokeniser: Any) -> Callable[[list[str]], list[str | None]]:
    from nirguard.errors import InvalidNIR

    tokenise = tokeniser.tokenise

    def convert(values: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for value in values:
            try:
                out.append(tokenise(value))
            except InvalidNIR:
                out.append(None)
        return out

    return convert


def _detokenise_batch(tokeniser: Any) -> Callable[[list[str]], list[str | None]]:
    from nirguard.errors import InvalidToken

    detokenise = tokeniser.detokenise

    def convert(values: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for value in values:
            try:
                out.append(detokenise(value.strip(ASCII_WS)))
            except InvalidToken:
                out.append(None)
        return out

    return convert
