"""Regenerate the console's screenshots in docs/images/ (run from the repository root).

    python docs/scripts/console_screenshots.py

It runs the browser flows of ``tests/test_console_browser.py`` (Debian's chromium, driven by
Playwright, on the deterministic world of ``tests/console_world.py``) with
``NIRGUARD_SCREENSHOTS`` set, so each page is saved as the officer sees it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if __name__ == "__main__":
    env = {**os.environ, "NIRGUARD_SCREENSHOTS": str(ROOT / "docs" / "images")}
    command = [sys.executable, "-m", "pytest", "-q", "-n0", "-p", "no:cacheprovider",
               "tests/test_console_browser.py"]  # fmt: skip
    sys.exit(subprocess.call(command, cwd=ROOT, env=env))  # noqa: S603
