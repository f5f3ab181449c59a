"""nirguard.errors: the tree, fixed messages, and the named home of the NIR messages."""

from __future__ import annotations

import pytest

from nirguard import InsecureKeyFileWarning, InvalidNIR, NirguardError
from nirguard.errors import NIR_MESSAGES


def test_nir_messages_are_the_invalid_nir_messages() -> None:
    assert set(NIR_MESSAGES) == InvalidNIR.codes
    for code, message in NIR_MESSAGES.items():
        assert str(InvalidNIR(code)) == message
        assert message.startswith("invalid NIR: ")


def test_nir_messages_are_read_only() -> None:
    with pytest.raises(TypeError):
        NIR_MESSAGES["key"] = "echo {value}"  # type: ignore[index]
    with pytest.raises(TypeError):
        del NIR_MESSAGES["key"]  # type: ignore[attr-defined]


def test_unknown_invalid_nir_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown InvalidNIR code"):
        InvalidNIR("nope")


def test_insecure_key_file_warning_is_a_user_warning_outside_the_error_tree() -> None:
    # A warning, not a refusal: `except NirguardError` must not start catching it.
    assert issubclass(InsecureKeyFileWarning, UserWarning)
    assert not issubclass(InsecureKeyFileWarning, NirguardError)
