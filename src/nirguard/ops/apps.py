"""The app's configuration: label ``nirguard_ops``, so it clashes with no project app."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["NirguardOpsConfig"]


class NirguardOpsConfig(AppConfig):  # type: ignore[misc]  # django is untyped here
    """nirguard's admin commands (``nirguard_status``, ``nirguard_unlock``)."""

    name = "nirguard.ops"
    label = "nirguard_ops"
    verbose_name = "nirguard"
