"""Reading a policy's fields from TOML and from environment variables, and saying
what is wrong with one, for :class:`~nirguard.policy.QuotaPolicy`'s loaders.

Everything here returns plain data (a mapping of fields, a message): the policy
validates it, so this module knows nothing of the policy class.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nirguard.errors import PolicyError

__all__ = ["describe", "env_fields", "toml_fields"]

#: Fields read from the environment as numbers (``off`` switches the first three off).
_NUMBERS = (
    "miss_ratio",
    "hot_cohort",
    "baseline",
    "miss_ratio_min_lookups",
    "hot_cohort_min",
    "portal_cohort_share",
    "sequence_share",
    "baseline_slack",
    "baseline_prior_days",
    "baseline_off_hours",
    "baseline_utc_offset",
    "baseline_volume",
)


def toml_fields(source: str | os.PathLike[str], table: str | None) -> Any:
    """The fields of a policy in TOML text, or a TOML file when given a path; ``table``
    selects a (dotted) table. ``"off"`` switches a field off.

    Raises:
        PolicyError: not TOML, or no such table.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise PolicyError(
                "invalid quota policy: reading TOML needs Python 3.11+ or the tomli package"
            ) from None
    text = Path(source).read_text("utf-8") if isinstance(source, os.PathLike) else source
    try:
        data: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise PolicyError("invalid quota policy: not valid TOML") from None
    for part in table.split(".") if table else ():
        if not isinstance(data, dict) or part not in data:
            raise PolicyError(f"invalid quota policy: no table {table!r}")
        data = data[part]
    return _offs(data)


def env_fields(
    defaults: Mapping[str, Any], prefix: str, environ: Mapping[str, str] | None
) -> dict[str, Any]:
    """The fields set by environment variables ``<prefix><FIELD>`` (``defaults``: every
    field and its default). ``off`` or ``none`` switches a field off;
    ``lockout_escalation`` is a comma-separated list.

    Raises:
        PolicyError: a number field that holds no number.
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    for name, default in defaults.items():
        raw = env.get(prefix + name.upper())
        if raw is None:
            continue
        raw = raw.strip()
        if name == "lockout_escalation":
            data[name] = tuple(_off(part.strip()) for part in raw.split(",") if part.strip())
        elif raw.lower() in ("off", "none") and (default is not None or name in _NUMBERS[:3]):
            data[name] = None
        elif name == "baseline_prior":  # "mean, sd"
            data[name] = tuple(_number(name, part.strip()) for part in raw.split(","))
        elif name in _NUMBERS:
            data[name] = _number(name, raw)
        else:
            data[name] = _off(raw)
    return data


def _off(value: str) -> str | None:
    return None if value.lower() in ("off", "none") else value


def _offs(data: Any) -> Any:
    if not isinstance(data, dict):
        return data
    out = {
        k: (None if isinstance(v, str) and v.lower() in ("off", "none") else v)
        for k, v in data.items()
    }
    steps = out.get("lockout_escalation")
    if isinstance(steps, list):
        out["lockout_escalation"] = tuple(
            None if isinstance(s, str) and s.lower() in ("off", "none") else s for s in steps
        )
    return out


def _number(name: str, raw: str) -> float:
    try:
        return float(raw) if "." in raw else int(raw)
    except ValueError:
        raise PolicyError(f"invalid quota policy: {name}: not a number") from None


def describe(exc: ValidationError) -> str:
    """One message for every error of ``exc``, naming fields, never echoing a value."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "policy"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "invalid quota policy: " + "; ".join(parts)
