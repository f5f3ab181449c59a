"""Load test of a real portal: the FastAPI demo under uvicorn, driven by ``wrk``.

Four portals serve the same endpoint (POST /infopatient, practitioner in
``X-Practitioner``, NIR in the JSON body, the same synthetic registry; see
``_load_apps.py``), measured in the same run, on the same Redis:

* ``bare``             no quota (the NIR is still validated);
* ``slowapi/redis``    slowapi with one per-practitioner limit (the yardstick);
* ``nirguard/memory``  the demo portal, nirguard on ``memory://``;
* ``nirguard/redis``   the demo portal, nirguard on Redis, the shipped default
  policy with every quota x1e5 (same checks and store work, no refusals).

``wrk`` (``apt-get install -y wrk``) spreads requests uniformly over 2,000
practitioners and 20,000 patients (5% of them unknown: 404, counted as misses),
so nearly every lookup is a new patient for its practitioner: the guard's
heaviest path. Each cell is run ``--repeat`` times (default 2), in rounds, so
noise from other processes shows as spread. Redis is a private ``redis-server``
started for the run (clean CPU counters; flushed before each portal) unless
``--redis URL`` is given.

Per cell: req/s, p50/p99 latency, responses by class (2xx; 404 = a miss,
correct; 403/429 = refused by a quota, correct; 503 = store "unavailable", NOT
correct with Redis healthy; others), socket errors/timeouts, Redis CPU per
request (``used_cpu_user+sys`` delta) and the portal's CPU per request.
Targets (issue 20): nirguard/redis >= 0.8x the bare endpoint's ok/s at 50, 200 and 2,000
connections, >= 1.0x slowapi's, zero 503 and zero socket errors. Every portal runs under
uvicorn with uvloop and httptools (``pip install -e '.[bench]'``).

    python benchmarks/bench_load.py [--conns 50,200,2000] [--duration 10] [--repeat 2]
        [--workers 1[,2]] [--only bare,slowapi/redis,...] [--redis URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _load_report import Cell, compare, dump_cells, load_cells, progress, table  # noqa: E402
from _load_wrk import (  # noqa: E402
    NEEDS_REDIS,
    VARIANTS,
    Portal,
    RedisProbe,
    logged_errors,
    run_wrk,
    write_script,
)

from tests.redis_tools import RedisServer, missing_redis_binaries  # noqa: E402

# -- the run ------------------------------------------------------------------------------------


def measure(
    args: argparse.Namespace, script: Path, redis_url: str | None, flush: bool
) -> list[Cell]:
    """Every cell: per worker count, per round, each portal (started afresh, warmed up)
    at each concurrency; a line printed as each cell ends."""
    cells: list[Cell] = []
    probe = RedisProbe(redis_url) if redis_url else None
    prefix = f"bench-load-{os.getpid()}"
    for workers in args.workers:
        for run in range(1, args.repeat + 1):
            for variant in args.only:
                if variant in NEEDS_REDIS and not redis_url:
                    continue
                if probe is not None and flush:
                    probe.client.flushall()  # our private server only
                env = _portal_env(args, f"{prefix}-{run}", variant, redis_url)
                portal = Portal(variant, workers, env)
                try:
                    run_wrk(script, portal.port, 50, args.warmup, args.timeout, args.threads)
                    for conns in args.conns:
                        cell = _measure_cell(args, script, portal, probe, workers, conns, run)
                        cells.append(cell)
                        print(progress(cell), flush=True)
                finally:
                    portal.stop()
                    errors = logged_errors(portal.log_tail(10_000_000))
                    if errors:
                        print(f"   ({variant} logged {dict(errors)}: see {portal.log.name})")
                    else:
                        Path(portal.log.name).unlink(missing_ok=True)
    return cells


def _portal_env(
    args: argparse.Namespace, prefix: str, variant: str, redis_url: str | None
) -> dict[str, str]:
    """The environment ``_load_apps.py`` reads: registry, key prefix, policy, stores."""
    env = {
        "BENCH_REGISTRY_SIZE": str(args.patients),
        "BENCH_REGISTRY_SEED": "2022",
        "BENCH_PREFIX": prefix,
        "BENCH_POLICY": args.policy,
        "BENCH_SLOWAPI_LIMIT": args.slowapi_limit,
    }
    if redis_url:
        env["BENCH_REDIS_URL"] = redis_url
        if variant == "nirguard/redis":
            env["BENCH_STORAGE"] = redis_url
    return env


def _measure_cell(
    args: argparse.Namespace,
    script: Path,
    portal: Portal,
    probe: RedisProbe | None,
    workers: int,
    conns: int,
    run: int,
) -> Cell:
    """One wrk run at ``conns`` connections, with the CPU Redis and the portal spent."""
    variant = portal.variant
    time.sleep(1)  # let closed connections drain
    redis_before = probe.snapshot() if probe else None
    app_before = portal.cpu()
    raw = run_wrk(script, portal.port, conns, args.duration, args.timeout, args.threads)
    app_cpu = portal.cpu() - app_before
    redis_after = probe.snapshot() if probe else None
    requests = int(raw["requests"])
    redis_us = None
    extra: dict[str, Any] = {}
    if redis_before and redis_after and variant in NEEDS_REDIS:
        redis_us = (redis_after[0] - redis_before[0]) / max(requests, 1) * 1e6
        extra["redis_cmds_per_req"] = (redis_after[1] - redis_before[1]) / max(requests, 1)
    return Cell(
        variant=variant,
        workers=workers,
        conns=conns,
        run=run,
        requests=requests,
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        statuses={str(k): int(v) for k, v in raw["statuses"].items()},
        socket_errors={k: int(raw[k]) for k in ("connect", "read", "write", "timeout") if raw[k]},
        redis_us_per_req=redis_us,
        app_us_per_req=app_cpu / max(requests, 1) * 1e6,
        extra=extra,
    )


def _raise_nofile(needed: int) -> int:
    """Raise the soft limit of open files towards the hard one: the limit it reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, needed * 2)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _ints(text: str) -> list[int]:
    """``50,200`` -> ``[50, 200]``."""
    return [int(x) for x in text.split(",") if x]


def _parser() -> argparse.ArgumentParser:
    """The command line (the module's docstring is its help)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--conns", type=_ints, default=[50, 200, 2000])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=10, help="wrk request timeout (s)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=_ints, default=[1])
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--miss-share", type=float, default=0.05)
    parser.add_argument("--practitioners", type=int, default=2000)
    parser.add_argument(
        "--only",
        type=lambda s: [v for v in s.split(",") if v],
        default=list(VARIANTS),
        help="portals, comma-separated: " + ",".join(VARIANTS),
    )
    parser.add_argument("--policy", default="default-scaled", choices=["default-scaled", "default"])
    parser.add_argument("--slowapi-limit", default="1000000/minute")
    parser.add_argument("--redis", default=None, help="Redis URL (default: a private redis-server)")
    parser.add_argument("--json", type=Path, default=None, help="also write every cell here")
    parser.add_argument(
        "--compare",
        type=Path,
        default=None,
        help="a --json file of an earlier run: print after/before",
    )
    parser.add_argument(
        "--table-from", type=Path, default=None, help="print the table of a --json file and exit"
    )
    return parser


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.table_from:
        cells = load_cells(args.table_from)
        print(table(cells, max(c.run for c in cells)))
        if args.compare:
            print(compare(cells, load_cells(args.compare)))
        return
    unknown = [v for v in args.only if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown portal(s) {unknown}; choose from {list(VARIANTS)}")
    if _ready(args):
        _run(args)


def _ready(args: argparse.Namespace) -> bool:
    """wrk, slowapi and uvicorn are here (else say so: the run is skipped); the open files
    limit is raised, and the concurrencies it cannot hold dropped."""
    if shutil.which("wrk") is None:
        print("bench_load: skipped: wrk is not installed (apt-get install -y wrk)")
        return False
    try:
        import slowapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as exc:
        print(f"bench_load: skipped: {exc.name} is missing (pip install -e '.[bench]')")
        return False
    nofile = _raise_nofile(max(args.conns) + 1000)
    if nofile < max(args.conns) + 200:
        print(f"bench_load: ulimit -n is {nofile}: dropping concurrencies it cannot hold")
        args.conns = [c for c in args.conns if c + 200 <= nofile]
    return True


def _run(args: argparse.Namespace) -> None:
    """The run: its header, every cell, the table, the ``--json`` file, the comparison."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        script = write_script(Path(tmp), args.patients, args.miss_share, args.practitioners)
        load = os.getloadavg()
        print(
            f"bench_load: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
            f"{load[2]:.2f} before the run (other processes share these cores: expect noise)"
        )
        print(
            f"wrk -t{args.threads} --timeout {args.timeout}s, {args.duration:.0f} s per cell, "
            f"{args.practitioners} practitioners x {args.patients} patients "
            f"({args.miss_share:.0%} unknown), policy {args.policy}"
        )
        if args.redis:
            cells = measure(args, script, args.redis, flush=False)
        elif missing_redis_binaries() is None:
            with RedisServer() as server:
                version = server.info("server").get("redis_version", "?")
                print(f"Redis: private redis-server {version} on port {server.port}")
                cells = measure(args, script, server.url(0), flush=True)
        else:
            print("Redis: no redis-server and no --redis: Redis portals skipped")
            cells = measure(args, script, None, flush=False)
        load = os.getloadavg()
        print(table(cells, args.repeat))
        print(f"\nload average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        if args.json:
            args.json.write_text(dump_cells(cells))
        if args.compare:
            print(compare(cells, load_cells(args.compare)))


if __name__ == "__main__":
    main()
