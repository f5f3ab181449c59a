"""nirguard._encoding: strict unpadded base64url, shared by keys and tokens."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nirguard._encoding import b64url_decode, b64url_encode


@given(st.binary(min_size=1, max_size=80))
def test_round_trip_and_no_padding(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert b64url_decode(text) == data


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.binary(min_size=1, max_size=40))
def test_no_two_strings_decode_to_the_same_bytes(data: bytes) -> None:
    text = b64url_encode(data)
    for char in ALPHABET:
        sibling = text[:-1] + char
        if sibling != text:
            assert b64url_decode(sibling) != data


@pytest.mark.parametrize(
    "text",
    ["", "A", "AAAAA", "AA==", "AA=", "+/8", "ab cd", "ab\ncd", "ab\n", "é", "AAAA\x00", "AB"],
)
def test_malformed_text_is_refused(text: str) -> None:
    assert b64url_decode(text) is None
