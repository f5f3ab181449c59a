"""The audit log of the sample run in docs/calibrate.md ("A run"), made again.

Four weeks of the calibrate tests' synthetic portal (``tests/calibrate_helpers.py``):
60 GPs, one GP covering a colleague's list one day (130 new patients), 4 hospital
desks, and one stolen GP account walking a birth cohort on day 7, all through a
real guard in shadow mode. The GPs run the shipped default (``QuotaPolicy(name="gp")``),
the desks the tests' desk policy. The traffic is seeded: the same log every time,
up to the policies in force when it runs.

From the repository root::

    python docs/scripts/calibrate_sample.py audit.jsonl
    nirguard calibrate audit.jsonl --policy-dir proposed --plot curves.png

and paste the second command's output into the page (``--plot`` needs matplotlib;
leave it out and drop the plot line otherwise). Timings differ from one machine to
the next; every count is the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # for tests.calibrate_helpers
sys.path.insert(0, str(ROOT / "src"))  # this checkout's nirguard, before any installed one

from nirguard import QuotaPolicy  # noqa: E402
from tests.calibrate_helpers import DESK, build_portal, drive  # noqa: E402

GP = QuotaPolicy(name="gp")  # the shipped default, as the page says


def policy_for(practitioner: str) -> QuotaPolicy:
    return DESK if practitioner.startswith("desk") else GP


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="the audit log to write (JSON lines)")
    args = parser.parse_args(argv)
    if args.log.exists():
        parser.error(f"{args.log} exists: the guard would append to it")
    portal = build_portal(seed=2026, gps=60, desks=4, days=28)
    drive(portal, args.log, enforce=False, policy=policy_for)
    lines = sum(1 for _ in args.log.open(encoding="utf-8"))
    print(f"{args.log}: {lines:,} lines, {len(portal.lookups):,} lookups")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
