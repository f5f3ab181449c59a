"""The four portals ``bench_load.py`` serves under uvicorn (``--factory``), one endpoint each.

All share the demo portal's pieces (examples/fastapi_portal/app.py): the practitioner from
``X-Practitioner``, the NIR from the JSON body, the fake Infopatient service over the same
synthetic registry, 404 problem for an unknown patient.

* ``bare``: no quota at all (the NIR is still validated: a real endpoint must);
* ``slowapi_app``: slowapi, one per-practitioner limit on the endpoint, on Redis;
* ``nirguard_app``: the demo portal itself (``create_app``), on ``BENCH_STORAGE``.

Environment (set by bench_load.py): BENCH_REGISTRY_SIZE, BENCH_REGISTRY_SEED, BENCH_STORAGE
(nirguard: ``memory://`` or a Redis URL), BENCH_REDIS_URL (slowapi), BENCH_SLOWAPI_LIMIT,
BENCH_PREFIX (key namespace of this run), BENCH_POLICY (``default-scaled`` | ``default``),
BENCH_POLICY_JSON (fields of the policy to change, e.g. ``{"sequence": null}``: for attribution).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from nirguard import QuotaPolicy, SecretKey, nir
from nirguard.testing import synthetic_registry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _policies import default_scaled  # noqa: E402

KEY = SecretKey(bytes(range(100, 132)), "bench-load")


def _portal() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fastapi_portal_app", ROOT / "examples" / "fastapi_portal" / "app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _registry() -> dict[str, dict[str, Any]]:
    return synthetic_registry(
        size=int(os.environ.get("BENCH_REGISTRY_SIZE", "20000")),
        seed=int(os.environ.get("BENCH_REGISTRY_SEED", "2022")),
    )


def _not_found() -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": "Not Found", "status": 404},
        status_code=404,
        media_type="application/problem+json",
    )


async def _nir_from_body(request: Request) -> str:
    try:
        payload = await request.json()
    except ValueError:
        payload = None
    value = payload.get("nir") if isinstance(payload, dict) else None
    if not isinstance(value, str) or not nir.is_valid(value):
        raise HTTPException(status_code=422, detail="invalid NIR")
    return nir.validate(value)


def _practitioner(portal: ModuleType) -> Any:
    """The demo portal's header reader as an async dependency: FastAPI runs a plain ``def``
    dependency in its thread pool, which the nirguard portal (it calls the reader itself)
    does not pay; this keeps the comparison about the quota, not the dependency."""
    read = portal.practitioner_from_header

    async def practitioner(request: Request) -> str:
        return read(request)  # type: ignore[no-any-return]

    return practitioner


def _health(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}


def bare() -> FastAPI:
    portal = _portal()
    service = portal.Infopatient(_registry())
    app = FastAPI(title="bare endpoint")

    @app.post("/infopatient")
    async def infopatient(
        practitioner: str = Depends(_practitioner(portal)),
        canonical: str = Depends(_nir_from_body),
    ) -> Any:
        identity = await service.find(canonical)
        return _not_found() if identity is None else identity

    _health(app)
    return app


def slowapi_app() -> FastAPI:
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded

    portal = _portal()
    service = portal.Infopatient(_registry())
    limiter = Limiter(
        key_func=portal.practitioner_from_header,
        storage_uri=os.environ["BENCH_REDIS_URL"],
        strategy="fixed-window",
        key_prefix=os.environ.get("BENCH_PREFIX", "bench") + "-slowapi",
    )
    app = FastAPI(title="slowapi endpoint")
    app.state.limiter = limiter
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]

    @app.post("/infopatient")
    @limiter.limit(os.environ.get("BENCH_SLOWAPI_LIMIT", "1000000/minute"))
    async def infopatient(
        request: Request,
        practitioner: str = Depends(_practitioner(portal)),
        canonical: str = Depends(_nir_from_body),
    ) -> Any:
        identity = await service.find(canonical)
        return _not_found() if identity is None else identity

    _health(app)
    return app


def _policy() -> QuotaPolicy:
    name = os.environ.get("BENCH_POLICY", "default-scaled")
    if name == "default":
        policy = QuotaPolicy()
    elif name == "default-scaled":
        policy = default_scaled()
    else:
        raise ValueError(f"unknown BENCH_POLICY {name!r}")
    changes = json.loads(os.environ.get("BENCH_POLICY_JSON") or "{}")
    return QuotaPolicy(**{**policy.model_dump(), **changes}) if changes else policy


def nirguard_app() -> FastAPI:
    portal = _portal()
    return portal.create_app(  # type: ignore[no-any-return]
        storage=os.environ.get("BENCH_STORAGE", "memory://"),
        key=KEY,
        policy=_policy(),
        registry=_registry(),
    )
