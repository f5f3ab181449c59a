"""SecretKey and KeyRing: validation, text form, and key hygiene."""

from __future__ import annotations

import base64
import copy
import logging
import os
import pickle
import stat
import traceback
import warnings
from pathlib import Path

import pytest

from nirguard import InsecureKeyFileWarning, InvalidKey, KeyRing, NirguardError, SecretKey

MATERIAL = bytes(range(100, 132))
ENCODED = base64.urlsafe_b64encode(MATERIAL).rstrip(b"=").decode()


def test_valid_key_keeps_id_and_round_trips_through_text() -> None:
    key = SecretKey(MATERIAL, "k-2026_01")
    assert key.key_id == "k-2026_01"
    assert key.to_text() == f"nirguard-key:v1:k-2026_01:{ENCODED}"
    assert SecretKey.from_text(key.to_text()) == key
    assert SecretKey.from_text("  " + key.to_text() + "\n") == key


def test_bytearray_material_is_copied() -> None:
    material = bytearray(MATERIAL)
    key = SecretKey(material, "k1")
    material[0] ^= 0xFF
    assert key == SecretKey(MATERIAL, "k1")


@pytest.mark.parametrize("length", [0, 1, 16, 31])
def test_short_material_is_refused(length: int) -> None:
    with pytest.raises(InvalidKey) as info:
        SecretKey(bytes(length), "k1")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, NirguardError)
    assert info.value.code == "key_invalid"


@pytest.mark.parametrize("material", ["x" * 40, None, 12345, memoryview(bytes(40)), [0] * 40])
def test_non_bytes_material_is_refused(material: object) -> None:
    with pytest.raises(InvalidKey):
        SecretKey(material, "k1")  # type: ignore[arg-type]


def test_longer_material_is_accepted() -> None:
    assert SecretKey(bytes(range(64)), "k1").key_id == "k1"


@pytest.mark.parametrize("byte", [0x00, 0x01, 0x6B, 0xFF])
@pytest.mark.parametrize("length", [32, 33, 64])
def test_one_repeated_byte_is_refused(byte: int, length: int) -> None:
    # All-zero (the old docstrings' bytes(32)), b"k" * 32, 0xFF...: not secret material.
    with pytest.raises(InvalidKey) as info:
        SecretKey(bytes([byte]) * length, "k1")
    assert info.value.code == "key_weak"
    with pytest.raises(InvalidKey):
        SecretKey(bytearray([byte]) * length, "k1")
    text = "nirguard-key:v1:k1:" + base64.urlsafe_b64encode(bytes([byte]) * length).decode()
    with pytest.raises(InvalidKey):
        SecretKey.from_text(text.rstrip("="))


def test_two_distinct_bytes_are_enough_to_pass_the_check() -> None:
    # The check refuses only the degenerate case; it is no entropy estimate.
    assert SecretKey(bytes(31) + b"\x01", "k1").key_id == "k1"
    assert SecretKey(b"\x01" + bytes(31), "k1").key_id == "k1"


@pytest.mark.parametrize(
    "key_id",
    ["", "a" * 33, "has space", "colon:id", "k1\n", "é", "k/1", "k.1", "１", None, 7, b"k1"],
)
def test_bad_key_ids_are_refused(key_id: object) -> None:
    with pytest.raises(InvalidKey):
        SecretKey(MATERIAL, key_id)  # type: ignore[arg-type]


@pytest.mark.parametrize("key_id", ["a", "A" * 32, "k_2026-11-29", "0"])
def test_good_key_ids_are_accepted(key_id: str) -> None:
    assert SecretKey(MATERIAL, key_id).key_id == key_id


def test_generate_makes_distinct_random_keys() -> None:
    one, two = SecretKey.generate("k1"), SecretKey.generate("k1")
    assert one != two
    assert one.key_id == "k1"
    assert len(SecretKey.from_text(one.to_text()).to_text()) == len(one.to_text())


def test_generate_default_key_id_is_valid_and_unique() -> None:
    ids = {SecretKey.generate().key_id for _ in range(20)}
    assert len(ids) == 20
    assert all(key_id.startswith("k") and len(key_id) <= 32 for key_id in ids)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nirguard-key:v1:k1",
        "nirguard-key:v2:k1:" + ENCODED,
        "nirguard-key:v1::" + ENCODED,
        "nirguard-key:v1:k 1:" + ENCODED,
        "nirguard-key:v1:k1:" + ENCODED + "=",  # padding is not part of the form
        "nirguard-key:v1:k1:" + ENCODED[:-1] + "!",
        "nirguard-key:v1:k1:" + ENCODED[:-2],  # wrong length
        "nirguard-key:v1:k1:" + base64.b64encode(bytes([0xFB] * 32)).decode(),  # + and /
        "nirguard-key:v1:k1:" + base64.urlsafe_b64encode(bytes(16)).decode().rstrip("="),
        "NIRGUARD-KEY:v1:k1:" + ENCODED,
    ],
)
def test_malformed_text_is_refused_without_echo(text: str) -> None:
    with pytest.raises(InvalidKey) as info:
        SecretKey.from_text(text)
    if len(text) > 20:
        assert text.split(":")[-1] not in str(info.value)
    assert ENCODED not in repr(info.value)


def test_non_canonical_base64_is_refused() -> None:
    # The last character of 43 base64url characters carries 2 unused bits.
    last = ENCODED[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    sibling = alphabet[alphabet.index(last) ^ 1]
    with pytest.raises(InvalidKey):
        SecretKey.from_text(f"nirguard-key:v1:k1:{ENCODED[:-1]}{sibling}")


def test_from_text_refuses_non_strings() -> None:
    with pytest.raises(InvalidKey):
        SecretKey.from_text(b"nirguard-key:v1:k1:" + ENCODED.encode())  # type: ignore[arg-type]


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    key = SecretKey(MATERIAL, "env-key")
    monkeypatch.setenv("NIRGUARD_TEST_KEY", key.to_text())
    assert SecretKey.from_env("NIRGUARD_TEST_KEY") == key
    monkeypatch.delenv("NIRGUARD_TEST_KEY")
    with pytest.raises(InvalidKey) as info:
        SecretKey.from_env("NIRGUARD_TEST_KEY")
    assert info.value.code == "key_missing"
    assert "NIRGUARD_TEST_KEY" in str(info.value)
    monkeypatch.setenv("NIRGUARD_TEST_KEY", "not a key " + ENCODED)
    with pytest.raises(InvalidKey) as info:
        SecretKey.from_env("NIRGUARD_TEST_KEY")
    assert ENCODED not in str(info.value)


def test_from_file(tmp_path: pytest.TempPathFactory) -> None:
    key = SecretKey(MATERIAL, "file-key")
    path = tmp_path / "k.key"  # type: ignore[operator]
    path.write_text(key.to_text() + "\n")
    path.chmod(0o600)
    assert SecretKey.from_file(path) == key
    assert SecretKey.from_file(str(path)) == key
    with pytest.raises(InvalidKey) as info:
        SecretKey.from_file(tmp_path / "missing.key")  # type: ignore[operator]
    assert info.value.code == "key_missing"
    (tmp_path / "bad.key").write_bytes(b"\xff\xfe" + MATERIAL)  # type: ignore[operator]
    with pytest.raises(InvalidKey):
        SecretKey.from_file(tmp_path / "bad.key")  # type: ignore[operator]


def test_equality_and_hash() -> None:
    key = SecretKey(MATERIAL, "k1")
    assert key == SecretKey(MATERIAL, "k1")
    assert key != SecretKey(MATERIAL, "k2")
    assert key != SecretKey(bytes(range(32)), "k1")
    assert key != MATERIAL
    assert hash(key) == hash(SecretKey(MATERIAL, "k1"))
    assert len({key, SecretKey(MATERIAL, "k1")}) == 1


def test_equality_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    import nirguard.keys

    calls: list[tuple[bytes, bytes]] = []
    real = nirguard.keys.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(nirguard.keys.hmac, "compare_digest", spy)
    assert SecretKey(MATERIAL, "k1") == SecretKey(MATERIAL, "k1")
    assert calls == [(MATERIAL, MATERIAL)]


# -- hygiene: the material never leaves by accident ------------------------------------------


def _renderings(obj: object) -> list[str]:
    return [repr(obj), str(obj), f"{obj}", f"{obj!r}", "%s" % (obj,), format(obj)]  # noqa: UP031


def test_repr_str_and_fstrings_show_the_key_id_only() -> None:
    key = SecretKey(MATERIAL, "visible-id")
    for text in _renderings(key):
        assert "visible-id" in text
        assert ENCODED not in text
        assert MATERIAL.hex() not in text
        assert repr(MATERIAL) not in text
    assert repr(key) == "SecretKey(key_id='visible-id')"


def test_logging_the_key_does_not_leak(caplog: pytest.LogCaptureFixture) -> None:
    key = SecretKey(MATERIAL, "logged")
    ring = KeyRing(key)
    with caplog.at_level(logging.DEBUG, logger="nirguard.test"):
        log = logging.getLogger("nirguard.test")
        log.info("key %s ring %r", key, ring)
        log.info(key)
        log.info("extra", extra={"the_key": key})
        try:
            raise RuntimeError(key)
        except RuntimeError:
            log.exception("failed with %r", key)
    text = caplog.text + "".join(str(record.__dict__) for record in caplog.records)
    assert "logged" in text
    assert ENCODED not in text
    assert MATERIAL.hex() not in text
    assert repr(MATERIAL)[2:-1] not in text


def test_exceptions_and_tracebacks_do_not_carry_material() -> None:
    key = SecretKey(MATERIAL, "k1")
    with pytest.raises(InvalidKey) as info:
        KeyRing(key, key)
    text = "".join(traceback.format_exception(info.value))
    assert ENCODED not in text
    assert repr(MATERIAL) not in text
    assert "k1" in str(info.value)
    assert info.value.code == "key_duplicate"


def test_material_is_private() -> None:
    key = SecretKey(MATERIAL, "k1")
    assert not hasattr(key, "__dict__")
    assert "material" not in [name for name in dir(key) if not name.startswith("_")]
    with pytest.raises(AttributeError):
        key.key_id = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        key.anything = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        del key._material


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_is_refused(protocol: int) -> None:
    key = SecretKey(MATERIAL, "k1")
    with pytest.raises(TypeError, match="cannot be pickled") as info:
        pickle.dumps(key, protocol=protocol)
    assert ENCODED not in str(info.value)
    with pytest.raises(TypeError):
        pickle.dumps(KeyRing(key), protocol=protocol)
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [key]}, protocol=protocol)


def test_reduce_and_getstate_refuse() -> None:
    key = SecretKey(MATERIAL, "k1")
    with pytest.raises(TypeError):
        key.__reduce__()
    with pytest.raises(TypeError):
        key.__reduce_ex__(2)
    with pytest.raises(TypeError):
        key.__getstate__()


def test_copies_are_the_same_immutable_object() -> None:
    # Decision: copying an immutable key gives the key itself; no new object
    # (and no pickle-based copy) ever holds the material.
    key = SecretKey(MATERIAL, "k1")
    ring = KeyRing(key)
    assert copy.copy(key) is key
    assert copy.deepcopy(key) is key
    assert copy.deepcopy({"k": key})["k"] is key
    assert copy.copy(ring) is ring
    assert copy.deepcopy(ring) is ring


# -- KeyRing ---------------------------------------------------------------------------------


def test_keyring_current_previous_and_lookup() -> None:
    k1, k2, k3 = (SecretKey(bytes(range(i, i + 32)), f"k{i}") for i in (1, 2, 3))
    ring = KeyRing(k3, k2, k1)
    assert ring.current is k3
    assert ring.previous == (k2, k1)
    assert ring.keys == (k3, k2, k1)
    assert ring.key_ids == ("k3", "k2", "k1")
    assert ring.get("k2") is k2
    assert ring.get("k9") is None
    assert ring.get(None) is None  # type: ignore[arg-type]
    assert ring["k1"] is k1
    with pytest.raises(KeyError):
        ring["k9"]
    assert "k1" in ring and "k9" not in ring and 3 not in ring
    assert list(ring) == [k3, k2, k1]
    assert len(ring) == 3
    assert KeyRing.of(ring) is ring
    assert KeyRing.of(k1).keys == (k1,)


def test_keyring_refuses_duplicates_and_non_keys() -> None:
    k1 = SecretKey(MATERIAL, "k1")
    with pytest.raises(InvalidKey):
        KeyRing(k1, SecretKey(bytes(range(32)), "k1"))  # same id, other material
    with pytest.raises(InvalidKey):
        KeyRing(k1, "k2")  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        KeyRing(MATERIAL)  # type: ignore[arg-type]
    with pytest.raises(InvalidKey):
        KeyRing.of("k1")  # type: ignore[arg-type]


def test_keyring_repr_shows_ids_only() -> None:
    ring = KeyRing(SecretKey(MATERIAL, "new"), SecretKey(bytes(range(32)), "old"))
    for text in _renderings(ring):
        assert "new" in text and "old" in text
        assert ENCODED not in text
    assert repr(ring) == "KeyRing(current='new', previous=('old',))"


def test_keyring_equality() -> None:
    k1, k2 = SecretKey(MATERIAL, "k1"), SecretKey(bytes(range(32)), "k2")
    assert KeyRing(k1, k2) == KeyRing(k1, k2)
    assert KeyRing(k1, k2) != KeyRing(k2, k1)
    assert KeyRing(k1) != KeyRing(k1, k2)
    assert hash(KeyRing(k1, k2)) == hash(KeyRing(k1, k2))


posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620, 0o602, 0o610, 0o601, 0o666])
def test_from_file_warns_when_group_or_others_have_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    path.write_text(SecretKey(MATERIAL, "file-key").to_text())
    path.chmod(mode)
    with pytest.warns(InsecureKeyFileWarning) as record:
        key = SecretKey.from_file(path)
    assert key.key_id == "file-key"  # a warning, not a refusal
    assert len(record) == 1
    message = str(record[0].message)
    assert f"{mode:04o}" in message
    assert str(path) in message
    assert ENCODED not in message
    assert record[0].filename == __file__  # points at the caller, not at nirguard
    assert issubclass(InsecureKeyFileWarning, UserWarning)


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_from_file_is_silent_for_an_owner_only_file(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k.key"
    path.write_text(SecretKey(MATERIAL, "file-key").to_text())
    path.chmod(mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SecretKey.from_file(path).key_id == "file-key"


@posix_only
def test_from_file_checks_the_file_a_symlink_points_to(tmp_path: Path) -> None:
    # Kubernetes mounts secrets as symlinks into a ..data directory.
    target = tmp_path / "target.key"
    target.write_text(SecretKey(MATERIAL, "file-key").to_text())
    target.chmod(0o644)
    link = tmp_path / "link.key"
    link.symlink_to(target)
    with pytest.warns(InsecureKeyFileWarning):
        SecretKey.from_file(link)
    target.chmod(0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SecretKey.from_file(link)


@posix_only
def test_from_file_does_not_warn_for_a_pipe(tmp_path: Path) -> None:
    # Process substitution and /dev/stdin have no meaningful mode: only regular files are checked.
    read_end, write_end = os.pipe()
    os.write(write_end, SecretKey(MATERIAL, "pipe-key").to_text().encode())
    os.close(write_end)
    try:
        assert stat.S_ISFIFO(os.fstat(read_end).st_mode)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert SecretKey.from_file(f"/dev/fd/{read_end}").key_id == "pipe-key"
    finally:
        os.close(read_end)


@posix_only
def test_from_file_refuses_a_malformed_open_file_without_warning_first(tmp_path: Path) -> None:
    # The warning is about an exposed key: a file that holds no key gets the InvalidKey alone.
    path = tmp_path / "bad.key"
    path.write_text("nirguard-key:v1:k1:tooshort\n")
    path.chmod(0o644)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidKey):
            SecretKey.from_file(path)
