"""The security office's console: cases, locked accounts, break-glass review, a patient's lookups.

An ASGI app (Starlette and Jinja2, the ``console`` extra) that reads the
:class:`~nirguard.audit_sql.SqlAuditStore` the guard writes to. A portal mounts it behind
its own login::

    from nirguard.console import Console, Officer

    def authorize(request):             # the portal's own session, SSO, client certificate...
        user = request.scope.get("user")
        if user is None or "security" not in user.groups:
            return None                 # refused: the console has no default that lets anyone in
        return Officer(user.name, "officer" if "dpo" in user.groups else "viewer")

    app.mount("/security", Console(store, authorize=authorize, guard=guard, keys=key))

or ``nirguard console`` serves it alone (see ``docs/console.md``).

Every page is server-rendered (no script at all), every form carries a CSRF token bound to
the officer, every response forbids framing, caching and referrers, and no page, URL or log
line holds a NIR: a NIR is typed only in the patient search form, posted, and turned at once
into its pseudonyms. Every officer action (unlock, verdict, NIR search, case change, export)
is recorded in the store before it happens, with who, what and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from nirguard.audit_sql import SqlAuditStore
from nirguard.console._app import Context, Handler, build_app, with_headers
from nirguard.console._cases import case_page, case_update, cases_page, locked_page, unlock
from nirguard.console._review import (
    break_glass_export,
    break_glass_page,
    patient_form,
    patient_search,
    portal_page,
    verdict,
)
from nirguard.console._security import Authorize, Officer
from nirguard.errors import ConfigurationError
from nirguard.keys import KeyRing, SecretKey
from nirguard.pseudonym import Pseudonymiser

__all__ = ["Console", "Officer"]

_PAGES: list[tuple[str, str, Handler, bool]] = [
    ("/cases", "GET", cases_page, False),
    ("/cases/{case_id}", "GET", case_page, False),
    ("/cases/{case_id}", "POST", case_update, True),
    ("/locked", "GET", locked_page, False),
    ("/locked/unlock", "POST", unlock, True),
    ("/break-glass", "GET", break_glass_page, False),
    ("/break-glass/export.csv", "GET", break_glass_export, True),
    ("/break-glass/{grant_id}", "POST", verdict, True),
    ("/patient", "GET", patient_form, True),
    ("/patient", "POST", patient_search, True),
    ("/portal", "GET", portal_page, False),
]


class Console:
    """The console as an ASGI app (mount it, or serve it with any ASGI server).

    Args:
        store: the audit store the guard writes to.
        authorize: ``authorize(request) -> Officer | None``, sync or async, **required**:
            ``None`` (or an exception, or anything but an :class:`Officer`) refuses the
            request with 401.
        guard: the portal's :class:`~nirguard.LookupGuard`, to show lock states and
            baselines and to unlock; ``None``: the console only reads the store.
        keys: the guard's pseudonym key (or key ring: every key is searched), to find a
            patient's lookups from a NIR; ``None``: the patient search is off.
        purpose: the purpose of the guard's pseudonymiser (``"guard"`` in the examples).
        csrf_key: key of the CSRF tokens; give one when several workers serve the console
            (default: a random key per process).
        nir_searches_per_hour: NIR searches one officer may run per hour.
        clock: POSIX seconds of "now" for the pages (a replayed trail may need its own).
        challenge: a ``WWW-Authenticate`` value sent with 401 (``nirguard console`` sends
            ``Basic``).
        title: shown at the top of every page.

    Raises:
        ConfigurationError: no ``authorize`` callable, or a wrong argument.
    """

    def __init__(
        self,
        store: SqlAuditStore,
        *,
        authorize: Authorize,
        guard: Any = None,
        keys: SecretKey | KeyRing | None = None,
        purpose: str = "guard",
        csrf_key: SecretKey | None = None,
        nir_searches_per_hour: int = 30,
        clock: Callable[[], float] = time.time,
        challenge: str | None = None,
        title: str = "Security console",
    ) -> None:
        if not callable(authorize):
            raise ConfigurationError(
                "the console needs authorize=callable(request) -> Officer | None: "
                "it has no default that lets anyone in"
            )
        if not isinstance(store, SqlAuditStore):
            raise ConfigurationError("store must be a nirguard.audit_sql.SqlAuditStore")
        if not isinstance(nir_searches_per_hour, int) or nir_searches_per_hour < 0:
            raise ConfigurationError("nir_searches_per_hour must be a non-negative integer")
        from nirguard.console._security import Csrf

        pseudonymisers = (
            [] if keys is None else [Pseudonymiser(k, purpose=purpose) for k in KeyRing.of(keys)]
        )
        self._ctx = Context(
            store=store,
            guard=guard,
            pseudonymisers=pseudonymisers,
            csrf=Csrf(csrf_key),
            clock=clock,
            nir_searches_per_hour=nir_searches_per_hour if pseudonymisers else 0,
            title=title,
        )
        self._app = with_headers(build_app(self._ctx, authorize, challenge, _PAGES))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return f"Console(store={self._ctx.store!r}, guard={self._ctx.guard is not None})"
