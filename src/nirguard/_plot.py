"""matplotlib for the figures of ``nirguard simulate --plot`` and ``nirguard calibrate --plot``.

matplotlib comes with the ``plot`` extra; without it, :func:`pyplot` says which
extra to install. It draws without a screen (the ``Agg`` backend).
"""

from __future__ import annotations

from typing import Any

__all__ = ["pyplot"]


def pyplot() -> Any:
    """``matplotlib.pyplot``, on the ``Agg`` backend.

    Raises:
        ModuleNotFoundError: matplotlib is not installed (it comes with the
            ``plot`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "--plot needs matplotlib: install nirguard's plot extra (in its checkout: pip install '.[plot]')",
            name="matplotlib",
        ) from exc
    return plt
