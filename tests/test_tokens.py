"""Tokeniser: pinned vectors, independent implementation, round trips and tampering."""

from __future__ import annotations

import base64
import copy
import pickle

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nirguard import (
    InvalidKey,
    InvalidNIR,
    InvalidToken,
    KeyRing,
    NirguardError,
    SecretKey,
    Tokeniser,
    nir,
)
from nirguard.testing import NIRGenerator

KEY1_MATERIAL = bytes(range(32))
KEY1 = SecretKey(KEY1_MATERIAL, "vector-key-1")
KEY2 = SecretKey(bytes(range(32, 96)), "vector-key-2")

# Pinned (docs/pseudonymisation.md): AES-SIV is deterministic, so tokens are stable.
VECTORS = [
    ("docs", "185057800608491", "vector-key-1:RpyWvReNLPJDfF6U1UAOz6QXJB29w7jxzHEPp8dBrw"),
    ("docs", "282042A12345617", "vector-key-1:z-2Wh90nR8vISsSrCPpIhHlRWGLpseIjqUODO8WHEQ"),
    ("docs", "282049741112380", "vector-key-1:S69RXoyjOudb9z8VFtRiz333xJuSUoI6D9LslIPRBg"),
    ("docs", "185059910908423", "vector-key-1:leQYqOZmd394_3Vihin_PfUIYHq0lrnaPT6UOSc7dw"),
    ("research/2026", "185057800608491", "vector-key-1:KCpynXkgVlc6kwq5ezVc8gFzWZUaCLFqr_KYb-wHsA"),
    ("café", "185057800608491", "vector-key-1:lpA6rmPFRw49ZXFVYveJzXCYUUQ56ybAWKf74zELiA"),
]


def reference_token(material: bytes, key_id: str, purpose: str, canonical: str) -> str:
    """The construction from the spec, written again."""
    subkey = HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=None,
        info=b"nirguard/v1/token/" + purpose.encode("utf-8"),
    ).derive(material)
    sealed = AESSIV(subkey).encrypt(canonical.encode("ascii"), None)
    return f"{key_id}:{base64.urlsafe_b64encode(sealed).rstrip(b'=').decode()}"


@pytest.mark.parametrize(("purpose", "canonical", "expected"), VECTORS)
def test_pinned_vectors(purpose: str, canonical: str, expected: str) -> None:
    tokeniser = Tokeniser(KEY1, purpose=purpose)
    assert tokeniser.tokenise(canonical) == expected
    assert tokeniser.detokenise(expected) == canonical
    assert reference_token(KEY1_MATERIAL, "vector-key-1", purpose, canonical) == expected


def test_round_trip_on_many_nirs_and_spellings() -> None:
    tokeniser = Tokeniser(KEY2, purpose="round-trip")
    for canonical in NIRGenerator(seed=4).many(300):
        token = tokeniser.tokenise(nir.format(canonical))
        assert token == tokeniser.tokenise(canonical)
        assert token.startswith("vector-key-2:")
        assert canonical not in token
        assert tokeniser.detokenise(token) == canonical


def test_lowercase_corsica_detokenises_to_canonical() -> None:
    tokeniser = Tokeniser(KEY1, purpose="docs")
    assert tokeniser.detokenise(tokeniser.tokenise("2 82 04 2a 123 456 17")) == "282042A12345617"


@pytest.mark.parametrize("value", ["", "185057800608490", "1850578006084", None, 185057800608491])
def test_invalid_nirs_are_not_tokenised(value: object) -> None:
    with pytest.raises(InvalidNIR):
        Tokeniser(KEY1, purpose="docs").tokenise(value)  # type: ignore[arg-type]


# -- every failure is one opaque InvalidToken -------------------------------------------------

TOKEN = VECTORS[0][2]


def _assert_invalid(tokeniser: Tokeniser, token: object) -> None:
    with pytest.raises(InvalidToken) as info:
        tokeniser.detokenise(token)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, NirguardError)
    assert error.code == "token_invalid"
    assert str(error) == "invalid token"
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


def test_flipping_any_character_is_detected() -> None:
    tokeniser = Tokeniser(KEY1, purpose="docs")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index in range(len(TOKEN)):
        for replacement in {alphabet[(alphabet.find(TOKEN[index]) + 1) % 64], "A", "_", ":"}:
            if replacement == TOKEN[index]:
                continue
            _assert_invalid(tokeniser, TOKEN[:index] + replacement + TOKEN[index + 1 :])


def test_flipping_any_bit_of_the_ciphertext_is_detected() -> None:
    tokeniser = Tokeniser(KEY1, purpose="docs")
    key_id, _, body = TOKEN.partition(":")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    for byte in range(len(raw)):
        for bit in range(8):
            tampered = bytearray(raw)
            tampered[byte] ^= 1 << bit
            encoded = base64.urlsafe_b64encode(bytes(tampered)).rstrip(b"=").decode()
            _assert_invalid(tokeniser, f"{key_id}:{encoded}")


def test_non_canonical_base64_is_refused() -> None:
    # The last character of 42 base64url characters carries 4 unused bits: a string with
    # other unused bits decodes to the same bytes and must still be refused.
    tokeniser = Tokeniser(KEY1, purpose="docs")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(TOKEN[-1])
    for low in range(1, 4):
        _assert_invalid(tokeniser, TOKEN[:-1] + alphabet[last ^ low])


def test_truncation_and_extension_are_detected() -> None:
    tokeniser = Tokeniser(KEY1, purpose="docs")
    for end in range(len(TOKEN)):
        _assert_invalid(tokeniser, TOKEN[:end])
    for suffix in ("A", "AA", "AAAA", "=", "==", " ", "\n", ":x"):
        _assert_invalid(tokeniser, TOKEN + suffix)
    _assert_invalid(tokeniser, " " + TOKEN)
    _assert_invalid(tokeniser, TOKEN + "A" * 10_000)


def test_wrong_key_id_wrong_purpose_other_key() -> None:
    _, _, body = TOKEN.partition(":")
    _assert_invalid(Tokeniser(KEY1, purpose="docs"), "vector-key-2:" + body)  # unknown id
    _assert_invalid(Tokeniser(KeyRing(KEY2, KEY1), purpose="docs"), "vector-key-2:" + body)
    _assert_invalid(Tokeniser(KEY1, purpose="docs2"), TOKEN)  # wrong purpose
    impostor = SecretKey(bytes(range(1, 33)), "vector-key-1")  # same id, other material
    _assert_invalid(Tokeniser(impostor, purpose="docs"), TOKEN)
    _assert_invalid(Tokeniser(KEY2, purpose="docs"), TOKEN)


@pytest.mark.parametrize(
    "token",
    [
        "",
        ":",
        "vector-key-1:",
        "vector-key-1",
        "vector-key-1::",
        "garbage",
        "vector-key-1:!!!!",
        "vector-key-1:é" + TOKEN[14:],
        "185057800608491",
        "vector-key-1:185057800608491",
        None,
        42,
        b"vector-key-1:RpyWvReNLPJDfF6U1UAOz6QXJB29w7jxzHEPp8dBrw",
        ["vector-key-1", "x"],
        object(),
    ],
)
def test_garbage_tokens(token: object) -> None:
    _assert_invalid(Tokeniser(KEY1, purpose="docs"), token)


def test_a_valid_siv_of_something_else_is_refused() -> None:
    # Authentic under the right key and purpose, but not a NIR.
    subkey = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=None, info=b"nirguard/v1/token/docs"
    ).derive(KEY1_MATERIAL)
    for plain in (b"hello", b"185057800608490", b"\xff" * 15):
        sealed = AESSIV(subkey).encrypt(plain, None)
        token = "vector-key-1:" + base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()
        _assert_invalid(Tokeniser(KEY1, purpose="docs"), token)


def test_rotation() -> None:
    old_token = Tokeniser(KEY1, purpose="rot").tokenise("185057800608491")
    ring = Tokeniser(KeyRing(KEY2, KEY1), purpose="rot")
    assert ring.detokenise(old_token) == "185057800608491"
    new_token = ring.tokenise("185057800608491")
    assert new_token.startswith("vector-key-2:")
    assert ring.detokenise(new_token) == "185057800608491"
    _assert_invalid(Tokeniser(KEY2, purpose="rot"), old_token)


# -- hygiene ----------------------------------------------------------------------------------


def test_repr_and_pickling() -> None:
    tokeniser = Tokeniser(KeyRing(KEY2, KEY1), purpose="docs")
    expected = "Tokeniser(purpose='docs', key_ids=('vector-key-2', 'vector-key-1'))"
    assert repr(tokeniser) == str(tokeniser) == f"{tokeniser}" == expected
    with pytest.raises(TypeError):
        pickle.dumps(tokeniser)
    assert copy.deepcopy(tokeniser) is tokeniser
    assert tokeniser.purpose == "docs"
    assert tokeniser.key_ids == ("vector-key-2", "vector-key-1")


def test_bad_purpose_and_keys() -> None:
    with pytest.raises(InvalidKey):
        Tokeniser(KEY1, purpose="")
    with pytest.raises(InvalidKey):
        Tokeniser("key", purpose="docs")  # type: ignore[arg-type]


def test_pseudonyms_and_tokens_use_separate_subkeys() -> None:
    from nirguard import Pseudonymiser

    token = Tokeniser(KEY1, purpose="docs").tokenise("185057800608491")
    pseudonym = Pseudonymiser(KEY1, purpose="docs").pseudonymise("185057800608491")
    assert token.split(":")[1][:22] != pseudonym.split(":")[1]
    _assert_invalid(Tokeniser(KEY1, purpose="docs"), pseudonym)
