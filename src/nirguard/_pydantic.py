"""``NIRStr``: a pydantic v2 field type for NIRs.

A thin adapter over :func:`nirguard.nir.validate` (strict). The field stores
the canonical 15-character string and is left out of the model's ``repr``.

Validation errors never carry the raw input, whatever the model's config:
the value is checked by a first validator that hands a fixed placeholder to
a second one, and only the second raises, so pydantic records the
placeholder as the error's ``input``. Error types are ``nir_<code>``.

>>> from pydantic import BaseModel, ValidationError
>>> class Patient(BaseModel):
...     nir: NIRStr
>>> Patient(nir="1 85 05 78 006 084 91").nir
'185057800608491'
>>> Patient(nir="1 85 05 78 006 084 91")
Patient()
>>> try:
...     Patient(nir="1 85 05 78 006 084 90")
... except ValidationError as exc:
...     exc.errors()[0]["type"], exc.errors()[0]["input"]
('nir_key', '[redacted]')
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from nirguard.errors import InvalidNIR
from nirguard.nir import validate

__all__ = ["NIRStr"]

#: JSON-schema pattern of the canonical form (what the field stores and
#: serialises). Input may also carry separators; see the rules page.
CANONICAL_PATTERN: Final = r"^[123478][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{8}$"


class _Redacted(str):
    """What pydantic sees as the input of a failed NIR validation."""

    __slots__ = ("code",)

    code: str

    def __new__(cls, code: str) -> _Redacted:
        self = super().__new__(cls, "[redacted]")
        self.code = code
        return self


def _check(value: Any) -> str:
    try:
        return validate(value, strict=True)
    except InvalidNIR as exc:
        return _Redacted(exc.code)


def _raise_if_rejected(value: str) -> str:
    if isinstance(value, _Redacted):
        raise PydanticCustomError(
            f"nir_{value.code}", "{reason}", {"reason": str(InvalidNIR(value.code))}
        )
    return value


class _NIRValidation:
    """Core and JSON schema hooks behind :data:`NIRStr`."""

    __slots__ = ()

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.chain_schema(
            [
                core_schema.no_info_plain_validator_function(_check),
                core_schema.no_info_plain_validator_function(_raise_if_rejected),
            ],
            serialization=core_schema.plain_serializer_function_ser_schema(
                str, return_schema=core_schema.str_schema()
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "format": "nir",
            "pattern": CANONICAL_PATTERN,
            "minLength": 15,
            "maxLength": 15,
            "description": "French social security number (NIR), canonical 15-character form.",
        }

    def __repr__(self) -> str:
        return "NIRValidation()"


NIRStr = Annotated[str, Field(repr=False), _NIRValidation()]
"""A NIR model field: validated strictly, stored canonical, hidden from ``repr``."""
