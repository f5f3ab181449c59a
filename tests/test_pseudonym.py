"""Pseudonymiser: pinned vectors, an independent implementation, purposes, rotation, hygiene."""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import pickle

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from nirguard import InvalidKey, InvalidNIR, KeyRing, Pseudonymiser, SecretKey, nir
from nirguard.pseudonym import pseudonymise_batch
from nirguard.testing import NIRGenerator

KEY1 = SecretKey(bytes(range(32)), "vector-key-1")
KEY2 = SecretKey(bytes(range(32, 96)), "vector-key-2")  # 64 bytes of material

# Pinned: computed once, published in docs/pseudonymisation.md. Any change here is a
# breaking change of the construction (nirguard/v1), never a refactoring.
VECTORS: list[tuple[SecretKey, str, str, str]] = [
    (KEY1, "docs", "185057800608491", "vector-key-1:ffb800eec942b1a0adbfe5e837b958a0"),
    (KEY1, "docs", "282042A12345617", "vector-key-1:398bb0b77b2974b37ae3d77dad50363a"),
    (KEY1, "docs", "282049741112380", "vector-key-1:551c661fe5cf9f6559d7858ace45f338"),
    (KEY1, "docs", "185059910908423", "vector-key-1:8349e2e5c343dfa47b1a44b4cd2352f4"),
    (KEY1, "research/2026", "185057800608491", "vector-key-1:1238b4de8899a9f1d7fdb28897123e07"),
    (KEY1, "research/2026", "282042A12345617", "vector-key-1:da30992592aceda4ac98fabf34c618d6"),
    (KEY1, "café", "185057800608491", "vector-key-1:b129acbd1e2437b95d6962ed4971956a"),
    (KEY1, "café", "185059910908423", "vector-key-1:6279e4e637e8afb638fc52af9add0c85"),
    (KEY2, "docs", "185057800608491", "vector-key-2:ffbb0cdbb49ed48ed2f8cdf461340b42"),
    (KEY2, "docs", "282042A12345617", "vector-key-2:b3627987e99b95f5f44d4e499e7d1897"),
    (KEY2, "research/2026", "282049741112380", "vector-key-2:05a345e6702d47604dd96c005b6b214e"),
]
KEY1_MATERIAL = bytes(range(32))
KEY2_MATERIAL = bytes(range(32, 96))


def reference(material: bytes, key_id: str, purpose: str, canonical: str) -> str:
    """The construction, written again from the spec: cryptography HKDF + stdlib hmac."""
    subkey = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"nirguard/v1/pseudonym/" + purpose.encode("utf-8"),
    ).derive(material)
    digest = hmac.new(subkey, canonical.encode("ascii"), hashlib.sha256).digest()
    return f"{key_id}:{digest[:16].hex()}"


def stdlib_hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 with the standard library only (salt absent = HashLen zero bytes)."""
    prk = hmac.new(bytes(32), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


MATERIALS = {"vector-key-1": KEY1_MATERIAL, "vector-key-2": KEY2_MATERIAL}


@pytest.mark.parametrize(("key", "purpose", "canonical", "expected"), VECTORS)
def test_pinned_vectors(key: SecretKey, purpose: str, canonical: str, expected: str) -> None:
    pseudonymiser = Pseudonymiser(key, purpose=purpose)
    assert pseudonymiser.pseudonymise(canonical) == expected
    assert pseudonymiser.pseudonymise_many([canonical]) == [expected]
    assert pseudonymiser.pseudonymise_canonical(canonical) == expected
    assert pseudonymiser.matches(canonical, expected)


@pytest.mark.parametrize(("key", "purpose", "canonical", "expected"), VECTORS)
def test_pinned_vectors_match_the_independent_implementation(
    key: SecretKey, purpose: str, canonical: str, expected: str
) -> None:
    material = MATERIALS[key.key_id]
    assert reference(material, key.key_id, purpose, canonical) == expected
    # and once more with an HKDF written from RFC 5869 with the standard library
    subkey = stdlib_hkdf(material, b"nirguard/v1/pseudonym/" + purpose.encode(), 32)
    digest = hmac.new(subkey, canonical.encode(), hashlib.sha256).hexdigest()[:32]
    assert f"{key.key_id}:{digest}" == expected


def test_random_keys_purposes_and_nirs_agree_with_the_reference() -> None:
    generator = NIRGenerator(seed=11)
    for index in range(20):
        material = bytes((index * 7 + j) % 256 for j in range(32 + index))
        key = SecretKey(material, f"r{index}")
        purpose = f"purpose-{index}-é"
        nirs = generator.many(50)
        pseudonymiser = Pseudonymiser(key, purpose=purpose)
        expected = [reference(material, key.key_id, purpose, nir.validate(n)) for n in nirs]
        assert pseudonymiser.pseudonymise_many(nirs) == expected
        assert [pseudonymiser.pseudonymise(n) for n in nirs] == expected


def test_rfc5869_stdlib_hkdf_matches_cryptography() -> None:
    # sanity of the helper itself: RFC 5869 test case 3 (no salt, no info)
    ikm = bytes.fromhex("0b" * 22)
    okm = bytes.fromhex(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )
    assert stdlib_hkdf(ikm, b"", 42) == okm


def test_format_of_pseudonyms() -> None:
    pseudonym = Pseudonymiser(KEY1, purpose="format").pseudonymise("185057800608491")
    key_id, _, digest = pseudonym.partition(":")
    assert key_id == "vector-key-1"
    assert len(digest) == 32
    assert digest == digest.lower()
    int(digest, 16)


# -- spellings, validation --------------------------------------------------------------------

SPELLINGS = [
    "185057800608491",
    "1 85 05 78 006 084 91",
    "1.85.05.78.006.084.91",
    "1-85-05-78-006-084-91",
    "1\u00a085\u00a005\u00a078\u00a0006\u00a0084\u00a091",
    "  185057800608491\t\n",
    "1 85 05 78 006 084 - 91",
]


def test_every_spelling_gives_one_pseudonym() -> None:
    pseudonymiser = Pseudonymiser(KEY1, purpose="docs")
    accepted = [s for s in SPELLINGS if nir.is_valid(s)]
    assert len(accepted) >= 6
    singles = {pseudonymiser.pseudonymise(s) for s in accepted}
    batch = set(pseudonymiser.pseudonymise_many(accepted))
    assert singles == batch == {"vector-key-1:ffb800eec942b1a0adbfe5e837b958a0"}
    for spelling in accepted:
        assert pseudonymiser.matches(spelling, "vector-key-1:ffb800eec942b1a0adbfe5e837b958a0")


def test_corsica_lowercase_spelling() -> None:
    pseudonymiser = Pseudonymiser(KEY1, purpose="docs")
    expected = "vector-key-1:398bb0b77b2974b37ae3d77dad50363a"
    for spelling in ("282042A12345617", "2 82 04 2a 123 456 17", "282042a12345617"):
        assert pseudonymiser.pseudonymise(spelling) == expected
        assert pseudonymiser.pseudonymise_many([spelling]) == [expected]


@given(st.integers(min_value=0, max_value=2**32), st.sampled_from(["", " ", ".", "-"]))
@settings(max_examples=60, deadline=None)
def test_spellings_property(seed: int, separator: str) -> None:
    canonical = NIRGenerator(seed=seed).generate()
    spaced = separator.join(nir.format(canonical).split(" "))
    pseudonymiser = Pseudonymiser(KEY2, purpose="prop")
    assert pseudonymiser.pseudonymise(spaced) == pseudonymiser.pseudonymise(canonical)
    assert (
        pseudonymiser.pseudonymise_many([spaced, canonical])
        == [pseudonymiser.pseudonymise(canonical)] * 2
    )


JUNK: list[object] = [
    "",
    "   ",
    "185057800608490",  # wrong key
    "1850578006084",  # no key
    "085057800608491",
    "185057800608491\n1",
    "１85057800608491",
    "185057800608491" + "0" * 10_000,
    None,
    185057800608491,
    b"185057800608491",
    object(),
    "NIR 185057800608491",
]


@pytest.mark.parametrize("value", JUNK)
def test_garbage_is_never_pseudonymised(value: object) -> None:
    pseudonymiser = Pseudonymiser(KEY1, purpose="docs")
    with pytest.raises(InvalidNIR) as info:
        pseudonymiser.pseudonymise(value)  # type: ignore[arg-type]
    assert "185057800608491" not in str(info.value)
    with pytest.raises(InvalidNIR):
        pseudonymiser.pseudonymise_many(["185057800608491", value])  # type: ignore[list-item]
    with pytest.raises(InvalidNIR):
        pseudonymiser.matches(value, "vector-key-1:ffb800eec942b1a0adbfe5e837b958a0")  # type: ignore[arg-type]


def test_pseudonymise_many_raises_the_first_error_code() -> None:
    pseudonymiser = Pseudonymiser(KEY1, purpose="docs")
    with pytest.raises(InvalidNIR) as info:
        pseudonymiser.pseudonymise_many(["185057800608491", "185057800608490", ""])
    assert info.value.code == "key"


def test_pseudonymise_many_agrees_with_validate_on_a_mixed_set() -> None:
    """The inlined fast path must accept exactly what nir.validate accepts."""
    generator = NIRGenerator(seed=5)
    pseudonymiser = Pseudonymiser(KEY1, purpose="mixed")
    values: list[str] = []
    for canonical in generator.many(3000):
        values.append(canonical)
        values.append(nir.format(canonical))
        values.append(canonical[:13] + f"{(int(canonical[13:]) % 97) + 1:02d}")  # wrong key
        values.append(canonical[:10] + "000" + canonical[13:])  # order 000
        values.append(canonical.lower())
    for digits in range(0, 10**12, 10**12 // 997):  # provisional numbers: any 12 digits
        body = f"7{digits:012d}"
        values.append(f"{body}{97 - int(body) % 97:02d}")
    values += ["718610018826448", "818610017357342", "118610018826448"]
    batch = pseudonymise_batch(pseudonymiser, values)
    for value, result in zip(values, batch, strict=True):
        if nir.is_valid(value):
            assert result == reference(KEY1_MATERIAL, "vector-key-1", "mixed", nir.validate(value))
        else:
            assert result is None


def test_pseudonymise_many_accepts_any_iterable() -> None:
    pseudonymiser = Pseudonymiser(KEY1, purpose="docs")
    values = ["185057800608491", "282042A12345617"]
    assert pseudonymiser.pseudonymise_many(iter(values)) == pseudonymiser.pseudonymise_many(
        tuple(values)
    )
    assert pseudonymiser.pseudonymise_many([]) == []


# -- purposes ---------------------------------------------------------------------------------


def test_purposes_give_unrelated_pseudonyms() -> None:
    nirs = NIRGenerator(seed=2).many(200)
    a = Pseudonymiser(KEY1, purpose="hospital-a").pseudonymise_many(nirs)
    b = Pseudonymiser(KEY1, purpose="hospital-b").pseudonymise_many(nirs)
    assert not set(a) & set(b)
    # no shared prefix beyond chance either
    same_first_byte = sum(x.split(":")[1][:2] == y.split(":")[1][:2] for x, y in zip(a, b))
    assert same_first_byte < 10
    assert not Pseudonymiser(KEY1, purpose="hospital-b").matches(nirs[0], a[0])


@pytest.mark.parametrize("purpose", ["", None, 3, b"docs", "\ud800"])
def test_bad_purposes_are_refused(purpose: object) -> None:
    with pytest.raises(InvalidKey) as info:
        Pseudonymiser(KEY1, purpose=purpose)  # type: ignore[arg-type]
    assert info.value.code == "purpose_invalid"


def test_purpose_is_keyword_only_and_keys_are_checked() -> None:
    with pytest.raises(TypeError):
        Pseudonymiser(KEY1, "docs")  # type: ignore[misc]
    with pytest.raises(InvalidKey):
        Pseudonymiser(KEY1_MATERIAL, purpose="docs")  # type: ignore[arg-type]


def test_derive_appends_to_the_purpose() -> None:
    base = Pseudonymiser(KeyRing(KEY2, KEY1), purpose="guard")
    cohort = base.derive("cohort")
    assert cohort.purpose == "guard/cohort"
    assert cohort.key_ids == ("vector-key-2", "vector-key-1")
    prefix = "1850578006"
    assert cohort.pseudonymise_canonical(prefix) == reference(
        KEY2_MATERIAL, "vector-key-2", "guard/cohort", prefix
    )
    assert cohort.pseudonymise("185057800608491") == Pseudonymiser(
        KEY2, purpose="guard/cohort"
    ).pseudonymise("185057800608491")
    assert cohort.pseudonymise("185057800608491") != base.pseudonymise("185057800608491")
    with pytest.raises(InvalidKey):
        base.derive("")
    with pytest.raises(TypeError):
        cohort.pseudonymise_canonical(1850578006)  # type: ignore[arg-type]


# -- rotation ---------------------------------------------------------------------------------


def test_rotation() -> None:
    old, new = KEY1, KEY2
    nirs = NIRGenerator(seed=9).many(20)
    before = Pseudonymiser(old, purpose="rot").pseudonymise_many(nirs)
    after_ring = Pseudonymiser(KeyRing(new, old), purpose="rot")
    # old pseudonyms still match through the ring that holds the old key as previous
    assert all(after_ring.matches(n, p) for n, p in zip(nirs, before, strict=True))
    # new pseudonyms use the current key
    fresh = after_ring.pseudonymise_many(nirs)
    assert all(p.startswith("vector-key-2:") for p in fresh)
    assert fresh == Pseudonymiser(new, purpose="rot").pseudonymise_many(nirs)
    assert all(after_ring.matches(n, p) for n, p in zip(nirs, fresh, strict=True))
    # once the old key leaves the ring, its pseudonyms no longer match
    new_only = Pseudonymiser(new, purpose="rot")
    assert not any(new_only.matches(n, p) for n, p in zip(nirs, before, strict=True))


def test_matches_needs_the_right_key_under_the_named_id() -> None:
    impostor = SecretKey(bytes(range(1, 33)), "vector-key-1")  # same id, other material
    pseudonym = Pseudonymiser(KEY1, purpose="docs").pseudonymise("185057800608491")
    assert not Pseudonymiser(impostor, purpose="docs").matches("185057800608491", pseudonym)


@pytest.mark.parametrize(
    "pseudonym",
    [
        "",
        "vector-key-1",
        "vector-key-1:",
        "vector-key-1:ffb800eec942b1a0adbfe5e837b958a",
        "vector-key-1:ffb800eec942b1a0adbfe5e837b958a00",
        "vector-key-1:FFB800EEC942B1A0ADBFE5E837B958A0",
        "vector-key-1:ffb800eec942b1a0adbfe5e837b958a1",
        "unknown:ffb800eec942b1a0adbfe5e837b958a0",
        ":ffb800eec942b1a0adbfe5e837b958a0",
        "ffb800eec942b1a0adbfe5e837b958a0",
        "vector-key-1:ffb800eec942b1a0adbfe5e837b958é0",
        " vector-key-1:ffb800eec942b1a0adbfe5e837b958a0",
        None,
        b"vector-key-1:ffb800eec942b1a0adbfe5e837b958a0",
        42,
    ],
)
def test_matches_is_false_for_malformed_pseudonyms(pseudonym: object) -> None:
    pseudonymiser = Pseudonymiser(KEY1, purpose="docs")
    assert pseudonymiser.matches("185057800608491", pseudonym) is False  # type: ignore[arg-type]


def test_matches_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import nirguard.pseudonym

    seen: list[tuple[str, str]] = []
    real = nirguard.pseudonym.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(nirguard.pseudonym.hmac, "compare_digest", spy)
    pseudonym = "vector-key-1:ffb800eec942b1a0adbfe5e837b958a0"
    assert Pseudonymiser(KEY1, purpose="docs").matches("185057800608491", pseudonym)
    assert seen == [(pseudonym, pseudonym)]


# -- hygiene ----------------------------------------------------------------------------------


def test_repr_shows_purpose_and_key_ids_only(caplog: pytest.LogCaptureFixture) -> None:
    pseudonymiser = Pseudonymiser(KeyRing(KEY2, KEY1), purpose="docs")
    expected = "Pseudonymiser(purpose='docs', key_ids=('vector-key-2', 'vector-key-1'))"
    assert repr(pseudonymiser) == expected
    assert str(pseudonymiser) == f"{pseudonymiser}" == expected
    with caplog.at_level(logging.INFO):
        logging.getLogger("nirguard.test").info("using %s", pseudonymiser)
    assert expected in caplog.text
    for material in (KEY1_MATERIAL, KEY2_MATERIAL):
        assert material.hex() not in caplog.text


def test_pseudonymiser_cannot_be_pickled_and_copies_are_itself() -> None:
    pseudonymiser = Pseudonymiser(KEY1, purpose="docs")
    with pytest.raises(TypeError):
        pickle.dumps(pseudonymiser)
    assert copy.copy(pseudonymiser) is pseudonymiser
    assert copy.deepcopy(pseudonymiser) is pseudonymiser
    with pytest.raises(AttributeError):
        pseudonymiser._purpose = "other"  # type: ignore[misc]


def test_errors_never_hold_the_nir() -> None:
    pseudonymiser = Pseudonymiser(KEY1, purpose="docs")
    for value in ("185057800608490", "1 85 05 78 006 084 90", "1850578006084"):
        with pytest.raises(InvalidNIR) as info:
            pseudonymiser.pseudonymise_many([value])
        assert "1850578006084" not in str(info.value)
        assert "1850578006084" not in repr(info.value)
