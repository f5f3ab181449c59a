"""NIRStr: strict validation, canonical storage, no input in any error output."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from nirguard import NIRStr
from tests.conftest import assert_no_nir


class Patient(BaseModel):
    nir: NIRStr


class LeakyPatient(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=False, strict=True, validate_assignment=True)
    nir: NIRStr
    other: int = 0


def test_stores_the_canonical_form() -> None:
    assert Patient(nir="1 85 05 78 006 084 91").nir == "185057800608491"
    assert Patient(nir="2 82 04 2a 123 456 17").nir == "282042A12345617"
    assert Patient.model_validate_json('{"nir": "1.85.05.78.006.084.91"}').nir == "185057800608491"
    assert Patient(nir="185057800608491").model_dump() == {"nir": "185057800608491"}
    assert json.loads(Patient(nir="185057800608491").model_dump_json()) == {
        "nir": "185057800608491"
    }


def test_model_repr_hides_the_nir() -> None:
    patient = Patient(nir="185057800608491")
    assert_no_nir(repr(patient) + str(patient), "185057800608491")


@pytest.mark.parametrize(
    ("value", "error_type"),
    [
        ("185057800608490", "nir_key"),
        ("1850578006084", "nir_length"),
        ("985057800608491", "nir_sex"),
        ("1 85 05 78 006 084\u200391", "nir_characters"),
        ("", "nir_empty"),
        (185057800608491, "nir_type"),
        (None, "nir_type"),
        (b"185057800608491", "nir_type"),
    ],
)
@pytest.mark.parametrize("model", [Patient, LeakyPatient])
def test_errors_carry_no_input(value: object, error_type: str, model: type[BaseModel]) -> None:
    with pytest.raises(ValidationError) as info:
        model(nir=value)
    exc = info.value
    errors = exc.errors()
    assert errors[0]["type"] == error_type
    blob = str(exc) + exc.json() + repr(errors) + repr(exc)
    assert_no_nir(blob)
    text = value.decode() if isinstance(value, bytes) else str(value)
    if len(text) > 4:
        assert text not in blob
        assert text[:13] not in blob
    assert errors[0]["input"] == "[redacted]"


def test_structural_error_types() -> None:
    adapter = TypeAdapter(NIRStr)
    body = "1851378006084"
    value = body + f"{97 - int(body) % 97:02d}"
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(value)
    assert info.value.errors()[0]["type"] == "nir_month"
    assert value not in str(info.value)


def test_validate_assignment_and_json_mode_do_not_leak() -> None:
    patient = LeakyPatient(nir="185057800608491")
    with pytest.raises(ValidationError) as info:
        patient.nir = "185057800608490"
    assert "185057800608490" not in str(info.value) + info.value.json()
    with pytest.raises(ValidationError) as info:
        LeakyPatient.model_validate_json('{"nir": "185057800608490"}')
    assert "185057800608490" not in str(info.value) + info.value.json()


def test_json_schema_has_a_pattern() -> None:
    schema = Patient.model_json_schema()["properties"]["nir"]
    assert schema["type"] == "string"
    import re

    pattern = re.compile(schema["pattern"])
    assert pattern.fullmatch("185057800608491")
    assert pattern.fullmatch("282042A12345617")
    assert not pattern.fullmatch("585057800608491")
    assert not pattern.fullmatch("1850578006084")
