"""Infopatient demo portal on FastAPI, guarded by nirguard.

A fake Infopatient service answers identity lookups by NIR over a synthetic
registry (``nirguard.testing``). The practitioner comes from the
``X-Practitioner`` header, standing in for real authentication. The NIR is sent
in the JSON body, never in the URL (URLs end up in access logs).

Environment:
    NIRGUARD_KEY      pseudonymisation key in text form (``nirguard keygen``);
                      unset: an ephemeral key is generated and a warning logged.
    NIRGUARD_STORAGE  quota store URI, default ``memory://``; a Redis URI
                      (``redis://127.0.0.1:6379/0``) shares quotas between workers.
    NIRGUARD_POLICY_* quota policy fields (see ``QuotaPolicy.from_env``).

Run (from the repository root; more in ``examples/README.md``)::

    uvicorn --factory --app-dir examples/fastapi_portal app:create_app
"""

# No "from __future__ import annotations" here: FastAPI reads the endpoint annotations at
# runtime, and those refer to names local to create_app().

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from nirguard import LookupGuard, Pseudonymiser, QuotaPolicy, SecretKey
from nirguard.alerts import BreakGlass
from nirguard.guard import GuardedLookup
from nirguard.integrations.fastapi import install_exception_handlers, lookup_dependency
from nirguard.testing import synthetic_registry as build_registry

log = logging.getLogger("portal")


def load_key() -> SecretKey:
    """The key from NIRGUARD_KEY, or an ephemeral one (with a warning) when unset."""
    if os.environ.get("NIRGUARD_KEY"):
        return SecretKey.from_env("NIRGUARD_KEY")
    log.warning(
        "NIRGUARD_KEY is not set: using an ephemeral key; pseudonyms and distinct-patient "
        "counts will not survive a restart nor be shared between workers"
    )
    return SecretKey.generate("ephemeral")


class Infopatient:
    """The fake identity service: an async lookup by canonical NIR."""

    def __init__(self, registry: dict[str, dict[str, Any]]) -> None:
        self._registry = registry

    async def find(self, canonical_nir: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)  # stands in for the network call to the real service
        return self._registry.get(canonical_nir)


def practitioner_from_header(request: Request) -> str:
    """Stand-in for authentication: the practitioner id from ``X-Practitioner``."""
    value = request.headers.get("X-Practitioner", "").strip()
    if not value or len(value) > 64:
        raise HTTPException(status_code=401, detail="missing or invalid X-Practitioner header")
    return value


def create_app(
    *,
    storage: str | None = None,
    key: SecretKey | None = None,
    policy: QuotaPolicy | None = None,
    clock: Callable[[], float] | None = None,
    registry: dict[str, dict[str, Any]] | None = None,
) -> FastAPI:
    """Build the portal; every argument defaults to the environment / demo value."""
    guard_options: dict[str, Any] = {}
    if clock is not None:
        guard_options["clock"] = clock
    reviews: list[BreakGlass] = []  # break-glass lookups, for the security office to review
    guard = LookupGuard(
        policy=policy if policy is not None else QuotaPolicy.from_env(),
        storage=storage or os.environ.get("NIRGUARD_STORAGE", "memory://"),
        pseudonymiser=Pseudonymiser(key or load_key(), purpose="guard"),
        audit=logging.getLogger("portal.audit"),
        on_break_glass=reviews.append,
        **guard_options,
    )
    service = Infopatient(registry if registry is not None else build_registry())
    guarded = lookup_dependency(guard, practitioner=practitioner_from_header, nir="nir")

    app = FastAPI(title="Infopatient demo portal")
    app.state.guard = guard
    install_exception_handlers(app)  # a new patient past a quota: 428, retry with X-Nirguard-Reason

    @app.post("/infopatient")
    async def infopatient(lookup: Annotated[GuardedLookup, Depends(guarded)]) -> Any:
        identity = lookup.record(await service.find(lookup.nir))
        if identity is None:
            return JSONResponse(
                {"type": "about:blank", "title": "Not Found", "status": 404},
                status_code=404,
                media_type="application/problem+json",
            )
        return identity

    @app.get("/break-glass")
    async def break_glass_reviews() -> list[dict[str, Any]]:
        # The review queue (a real portal: behind the security office's own login).
        return [asdict(granted) for granted in reviews]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
