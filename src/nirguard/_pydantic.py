"""``NIRStr``: a pydantic v2 field type for NIRs, and ``RedactErrors``.

A thin adapter over :func:`nirguard.nir.validate` (strict). What it
guarantees, whatever the model's config (``hide_input_in_errors``,
``strict``, ``validate_assignment``, ...) and wherever the type sits (a
field, ``NIRStr | None``, ``list[NIRStr]``, ``dict[str, NIRStr]``, a union,
a nested model):

* **The value never prints.** The field holds the canonical 15-character
  form as a ``str`` subclass whose ``repr`` is masked
  (``NIRStr('1 85 ** ** *** *** **')``), so the model's ``repr``/``str``, and
  those of any list, dict or tuple holding it, show no number; a plain
  ``NIRStr`` field is left out of the model's ``repr`` altogether. ``str()``,
  f-strings, ``==``, hashing, ``json.dumps``, :meth:`~pydantic.BaseModel.model_dump_json`
  and ``model_dump(mode="json")`` give the canonical number: it is the data
  the application asked for.
* **Its own errors never carry the input**: the value is checked by a first
  validator that hands a fixed placeholder to a second one, and only the
  second raises, so pydantic records ``"[redacted]"`` as the error's
  ``input`` in ``str(exc)``, ``.errors()`` and ``.json()``. Error types are
  ``nir_<code>`` (``nir_key``, ``nir_length``, ...), messages are fixed.

What it cannot guarantee: errors that pydantic builds for the *rest* of the
model. In ``NIRStr | Literal["unknown"]`` or ``NIRStr | SomeModel``, a value
that fails every member also fails the other members, and *their* errors
carry the raw input (a mistyped NIR, or a 13-character body); a missing
field's error carries the whole input object, valid NIRs included. Wrap
such a type (or the whole model) in :class:`RedactErrors`, which rebuilds
every error raised inside it with ``"[redacted]"`` as input and no context.

>>> from typing import Annotated, Literal
>>> from pydantic import BaseModel, ValidationError
>>> class Patient(BaseModel):
...     nir: NIRStr
...     twins: list[NIRStr] = []
...     contact: Annotated[NIRStr | Literal["unknown"], RedactErrors()] = "unknown"
>>> patient = Patient(nir="1 85 05 78 006 084 91", twins=["185057800608491"])
>>> patient.nir
NIRStr('1 85 ** ** *** *** **')
>>> patient.nir == "185057800608491", str(patient.nir)
(True, '185057800608491')
>>> patient
Patient(twins=[NIRStr('1 85 ** ** *** *** **')], contact='unknown')
>>> patient.model_dump_json()
'{"nir":"185057800608491","twins":["185057800608491"],"contact":"unknown"}'
>>> try:
...     Patient(nir="1 85 05 78 006 084 90")
... except ValidationError as exc:
...     exc.errors()[0]["type"], exc.errors()[0]["input"]
('nir_key', '[redacted]')
>>> try:
...     Patient(nir="185057800608491", contact="185057800608490")
... except ValidationError as exc:
...     [(error["type"], error["input"]) for error in exc.errors()]
[('nir_key', '[redacted]'), ('literal_error', '[redacted]')]
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import Field, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from nirguard.errors import InvalidNIR
from nirguard.nir import validate

__all__ = ["NIRStr", "RedactErrors"]

#: JSON-schema pattern of the canonical form (what the field stores and
#: serialises). Input may also carry separators; see the rules page.
CANONICAL_PATTERN: Final = r"^[123478][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{8}$"

#: What a redacted error shows as its input.
REDACTED: Final = "[redacted]"


class _NIRText(str):
    """The validated value: the canonical NIR, a ``str`` whose ``repr`` is masked.

    Only ``repr`` changes: containers and pydantic models print their items
    with it. Every ``str`` operation sees the canonical number and returns
    plain ``str``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"NIRStr('{self[0]} {self[1:3]} ** ** *** *** **')"


class _Redacted(str):
    """What pydantic sees as the input of a failed NIR validation."""

    __slots__ = ("code",)

    code: str

    def __new__(cls, code: str) -> _Redacted:
        self = super().__new__(cls, REDACTED)
        self.code = code
        return self


def _check(value: Any) -> str:
    try:
        return _NIRText(validate(value, strict=True))
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
        # No serializer of our own: pydantic writes a str subclass as a string in JSON
        # and returns the value itself (masked repr and all) in Python mode.
        return core_schema.chain_schema(
            [
                core_schema.no_info_plain_validator_function(_check),
                core_schema.no_info_plain_validator_function(_raise_if_rejected),
            ]
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
"""A NIR model field: validated strictly, stored canonical, masked in every ``repr``.

The value is a ``str`` (a subclass whose ``repr`` is masked); its errors are
``nir_<code>`` with ``"[redacted]"`` as input. See the module documentation
for what it guarantees in containers and unions, and :class:`RedactErrors`
for the rest.
"""


def _redacted_copy(exc: ValidationError) -> ValidationError:
    details = [
        InitErrorDetails(
            type=PydanticCustomError(error["type"], error["msg"]),
            loc=error["loc"],
            input=REDACTED,
        )
        for error in exc.errors()  # only type, loc and msg are carried over
    ]
    return ValidationError.from_exception_data(exc.title, details)


def _redact_errors(value: Any, handler: core_schema.ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError as exc:
        raise _redacted_copy(exc) from None


class RedactErrors:
    """Annotated marker: every validation error raised inside the annotated
    type is rebuilt with ``"[redacted]"`` as its input and no context.

    Put it around what :data:`NIRStr` cannot reach on its own: a union with
    other members, a nested model (whose missing-field error would carry the
    whole input), or a whole request body::

        contact: Annotated[NIRStr | Literal["unknown"], RedactErrors()]
        referral: Annotated[Referral, RedactErrors()]
        TypeAdapter(Annotated[Visit, RedactErrors()]).validate_python(data)

    Each error keeps its ``type``, ``loc`` and ``msg`` (pydantic's messages
    hold no input; the text of your own validators' exceptions is kept as you
    wrote it). Validation, serialisation and the JSON schema are the wrapped
    type's. It applies where validation passes through the annotation, so not
    to ``Model(...)`` itself: for that, set ``hide_input_in_errors=True`` in
    the model's config (``str(exc)``) and read ``exc.errors(include_input=False)``.
    """

    __slots__ = ()

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_wrap_validator_function(_redact_errors, handler(source))

    def __repr__(self) -> str:
        return "RedactErrors()"
