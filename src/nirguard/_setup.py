"""Building a guard from its arguments: checks, the engine, the pseudonymiser, metrics.

What :class:`~nirguard.LookupGuard` does at construction, out of its way:
every argument is checked once here, so that a lookup never meets a bad one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

from nirguard._engine import Engine
from nirguard._inputs import Policies
from nirguard._reports import Metrics
from nirguard.errors import ConfigurationError
from nirguard.keys import SecretKey
from nirguard.metrics import GuardMetrics, default_metrics
from nirguard.policy import QuotaPolicy
from nirguard.pseudonym import Pseudonymiser

__all__ = [
    "EphemeralKeyWarning",
    "check_options",
    "hooks_mode",
    "make_engine",
    "make_metrics",
    "make_pseudonymiser",
    "declared_kinds",
]


class EphemeralKeyWarning(UserWarning):
    """A shared store is used without a pseudonymiser: patient keys use a random
    per-process key, so distinct-patient counts differ between processes."""


def check_options(
    policy: object, clock: object, storage: object, key_prefix: object, deadline: object
) -> None:
    if not isinstance(policy, QuotaPolicy) and not callable(policy):
        raise ConfigurationError("policy must be a QuotaPolicy or a callable returning one")
    if not callable(clock):
        raise ConfigurationError("clock must be a zero-argument callable")
    if not isinstance(storage, str):
        raise ConfigurationError("storage must be a storage URI string")
    if not isinstance(key_prefix, str) or not key_prefix or any(c in key_prefix for c in "{}:%"):
        raise ConfigurationError("key_prefix must be a non-empty string without {, }, : or %")
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not deadline > 0:
        raise ConfigurationError("deadline must be a positive number of seconds")


def make_engine(
    storage: str,
    clock: Callable[[], float],
    key_prefix: str,
    deadline: float,
    options: dict[str, Any] | None,
) -> Engine:
    if storage.startswith("memory://"):
        from nirguard._memory import MemoryEngine
        from nirguard._memory_store import fork_mode

        return MemoryEngine(clock, prefix=key_prefix, on_fork=fork_mode(storage))
    from nirguard._redis import RedisEngine

    return RedisEngine(storage, prefix=key_prefix, options=options, deadline=float(deadline))


def make_pseudonymiser(given: object, engine: Engine) -> Pseudonymiser:
    if given is not None:
        if not isinstance(given, Pseudonymiser):
            raise ConfigurationError("pseudonymiser must be a nirguard.Pseudonymiser")
        return given
    if engine.kind != "memory":
        warnings.warn(
            "LookupGuard without a pseudonymiser on a shared store: patients are keyed "
            "with a random per-process key, so distinct-patient counts differ between "
            "processes and reset on restart. Pass pseudonymiser=Pseudonymiser(...).",
            EphemeralKeyWarning,
            stacklevel=3,
        )
    return Pseudonymiser(SecretKey.generate("ephemeral"), purpose="guard")


def declared_kinds(policies: Policies, kinds: Iterable[str] | None) -> frozenset[str]:
    if isinstance(kinds, str):
        raise ConfigurationError("kinds must be an iterable of policy names, not one string")
    declared = set(kinds or ())
    fixed = policies.fixed
    if fixed is not None and fixed.name:
        declared.add(fixed.name)
    return frozenset(declared)


def make_metrics(metrics: object, store: str, kinds: frozenset[str]) -> Metrics | None:
    if metrics is None or metrics is True:
        return default_metrics(store=store, kinds=kinds)
    if metrics is False:
        return None
    if isinstance(metrics, GuardMetrics):
        return metrics.for_guard(store=store, kinds=kinds)
    raise ConfigurationError("metrics must be a GuardMetrics, True, False or None")


def hooks_mode(hooks: object, hook_queue: object) -> bool:
    if hooks not in ("background", "inline"):
        raise ConfigurationError('hooks must be "background" or "inline"')
    if isinstance(hook_queue, bool) or not isinstance(hook_queue, int) or hook_queue < 1:
        raise ConfigurationError("hook_queue must be a positive number of items")
    return hooks == "background"
