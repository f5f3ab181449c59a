"""The guard the commands act on: ``NIRGUARD_GUARD``, or one built from the settings."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.utils.module_loading import import_string

from nirguard._ops import ops_guard
from nirguard.config import GuardSettings
from nirguard.errors import NirguardError
from nirguard.guard import LookupGuard

__all__ = ["project_guard"]


def project_guard(*, audited: bool) -> tuple[LookupGuard, GuardSettings | None]:
    """The project's guard, and the settings it was built from (``None`` for ``NIRGUARD_GUARD``).

    Raises:
        CommandError: ``NIRGUARD_GUARD`` names no guard, or the settings are wrong.
    """
    from django.conf import settings  # here: a module-level LazySettings trips doctest collection

    dotted: Any = getattr(settings, "NIRGUARD_GUARD", None)
    if dotted:
        try:
            guard = import_string(dotted) if isinstance(dotted, str) else dotted
        except ImportError:
            raise CommandError("NIRGUARD_GUARD does not name an importable object") from None
        if not isinstance(guard, LookupGuard):
            raise CommandError("NIRGUARD_GUARD must name a nirguard.LookupGuard")
        return guard, None
    try:
        loaded = GuardSettings.load(settings)
        return ops_guard(loaded, audited=audited), loaded
    except NirguardError as exc:
        raise CommandError(str(exc)) from None
