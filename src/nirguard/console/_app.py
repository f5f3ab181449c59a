"""The console's plumbing: routes, the gate every request passes, rendering, headers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from nirguard.audit_sql import SqlAuditStore, mask_nirs
from nirguard.console._charts import day_label
from nirguard.console._security import (
    HEADERS,
    Authorize,
    Csrf,
    Officer,
    call_authorize,
    same_origin,
)
from nirguard.pseudonym import Pseudonymiser

__all__ = ["Context", "Handler", "build_app", "with_headers"]

_log = logging.getLogger("nirguard.console")

#: A page: ``(context, request, officer, form fields) -> Response``, run in a worker thread.
Handler = Callable[["Context", Request, Officer, dict[str, str]], Response]


def _when(value: float | None) -> str:
    if value is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value)) + " UTC"


@dataclass
class Context:
    """What every page needs: the store, the guard, the keys, the clock, the templates."""

    store: SqlAuditStore
    guard: Any
    pseudonymisers: list[Pseudonymiser]
    csrf: Csrf
    clock: Callable[[], float]
    nir_searches_per_hour: int
    title: str
    env: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("nirguard.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["day"] = day_label
        self.env.filters["masked"] = lambda text: (
            mask_nirs(None if text is None else str(text)) or ""
        )

    @property
    def reader(self) -> Any:
        return self.store.reader

    def render(
        self,
        request: Request,
        officer: Officer,
        template: str,
        http_status: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        """A page of the console (every value is escaped by the template engine)."""
        base = request.scope.get("root_path", "").rstrip("/")
        html = self.env.get_template(template).render(
            base=base,
            officer=officer,
            csrf=self.csrf.token(officer),
            title=self.title,
            page=template.removesuffix(".html"),
            **values,
        )
        return HTMLResponse(html, status_code=http_status)

    def refuse(
        self, request: Request, officer: Officer | None, status: int, message: str
    ) -> Response:
        """An error page (no detail of the request is echoed)."""
        if officer is None:
            return HTMLResponse(_BARE.format(status=status, message=message), status_code=status)
        return self.render(request, officer, "error.html", http_status=status, message=message)

    def back(self, request: Request, path: str) -> RedirectResponse:
        """Back to a page of the console after a form (303: the browser GETs it)."""
        base = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(base + path, status_code=303)


_BARE = (
    "<!doctype html><html lang=en><head><meta charset=utf-8><title>{status}</title></head>"
    "<body><h1>{status}</h1><p>{message}</p></body></html>"
)


def _gate(
    ctx: Context, authorize: Authorize, challenge: str | None, handler: Handler, act: bool
) -> Any:
    async def endpoint(request: Request) -> Response:
        officer = await call_authorize(authorize, request)
        if officer is None:
            response = ctx.refuse(request, None, 401, "Sign in to the security console.")
            if challenge:
                response.headers["WWW-Authenticate"] = challenge
            return response
        if act and not officer.can_act:
            return ctx.refuse(request, officer, 403, "This needs the officer role.")
        fields: dict[str, str] = {}
        if request.method == "POST":
            if not same_origin(request.headers, request.headers.get("host")):
                return ctx.refuse(request, officer, 403, "Cross-site form refused.")
            form = await request.form(max_files=0, max_fields=20)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            await form.close()
            if not ctx.csrf.check(officer, fields.get("csrf")):
                return ctx.refuse(
                    request,
                    officer,
                    403,
                    "The form's token is missing or expired: reload the page.",
                )
        return await run_in_threadpool(handler, ctx, request, officer, fields)

    return endpoint


async def _stylesheet(request: Request) -> Response:
    css = resources.files("nirguard.console").joinpath("static/console.css").read_text("utf-8")
    return Response(css, media_type="text/css", headers={"Cache-Control": "no-store"})


def build_app(
    ctx: Context,
    authorize: Authorize,
    challenge: str | None,
    pages: list[tuple[str, str, Handler, bool]],
) -> Starlette:
    """The Starlette app: ``pages`` are ``(path, method, handler, officers_only)``."""

    async def home(request: Request) -> Response:
        return ctx.back(request, "/cases")

    routes = [Route("/", home, methods=["GET"]), Route("/static/console.css", _stylesheet)]
    for path, method, handler, act in pages:
        routes.append(Route(path, _gate(ctx, authorize, challenge, handler, act), methods=[method]))
    return Starlette(routes=routes)


def with_headers(app: Any) -> Any:
    """Wrap an ASGI app so that every HTTP response carries :data:`HEADERS`."""
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in HEADERS.items()]
    names = {k for k, _ in extra}

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped
