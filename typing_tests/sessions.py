"""Checked by ``mypy --strict`` (never run): the ``session=`` parameters keep their types.

``guard.lookup``/``open_lookup`` take a ``str`` or ``None``; ``protect`` a parameter name
or a callable, and keeps the signature; each web integration a callable (sync or async
where its ``practitioner`` may be). A non-str id, or a name given to an integration, is a
type error (the ``type: ignore`` comments below would be unused otherwise: strict mode
reports those).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from django.http import HttpRequest, HttpResponse
from starlette.requests import Request
from typing_extensions import assert_type

from nirguard import LookupGuard
from nirguard.integrations import django as django_integration
from nirguard.integrations import fastapi as fastapi_integration
from nirguard.integrations import flask as flask_integration

guard = LookupGuard()


@guard.protect(practitioner="practitioner_id", nir="nir", session="session_id")
def by_name(practitioner_id: str, nir: str, session_id: str | None = None) -> dict[str, str]:
    return {}


@guard.protect(practitioner="who", nir="nir", session=lambda who, nir, ctx: ctx["sid"])
async def by_callable(who: str, nir: str, ctx: dict[str, str]) -> int:
    return 1


assert_type(by_name("10003456789", "185057800608491", session_id="s-1"), dict[str, str])
kept: Callable[[str, str, dict[str, str]], Coroutine[Any, Any, int]] = by_callable

with guard.lookup("10003456789", "185057800608491", session="s-1") as lookup:
    lookup.record({"name": "x"})
with guard.lookup("10003456789", "185057800608491", session=None):
    pass
guard.lookup("10003456789", "185057800608491", session=b"s-1")  # type: ignore[arg-type]


async def opened() -> None:
    await guard.open_lookup("10003456789", "185057800608491", session="s-1")
    await guard.open_lookup("10003456789", "185057800608491", session=7)  # type: ignore[arg-type]


def who(request: Request) -> str:
    return "10003456789"


async def sid(request: Request) -> str | None:
    return request.headers.get("X-Session")


fastapi_integration.lookup_dependency(guard, practitioner=who, session=sid)
fastapi_integration.lookup_dependency(guard, practitioner=who, session=lambda r: None)
fastapi_integration.lookup_dependency(guard, practitioner=who, session="sid")  # type: ignore[arg-type]

flask_integration.guarded_view(guard, practitioner=lambda: "1", session=lambda: "s-1")
flask_integration.guarded_view(guard, practitioner=lambda: "1", session="sid")  # type: ignore[arg-type]


def django_who(request: HttpRequest) -> str:
    return "10003456789"


def django_sid(request: HttpRequest) -> str | None:
    key: str | None = request.session.session_key
    return key


async def django_asid(request: HttpRequest) -> str | None:
    return django_sid(request)


@django_integration.guarded_view(guard, practitioner=django_who, session=django_sid)
def view(request: HttpRequest, *, lookup: Any) -> HttpResponse:
    return HttpResponse()


django_integration.guarded_view(guard, practitioner=django_who, session=django_asid)
django_integration.guarded_view(guard, practitioner=django_who, session="k")  # type: ignore[arg-type]
