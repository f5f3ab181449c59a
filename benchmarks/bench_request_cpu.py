"""CPU per request of the load benchmark's portals, in process, and where the guard's share goes.

``bench_load.py`` measures the portals under uvicorn and ``wrk``; on a shared host req/s move
by 2x between runs, and a sampling profiler there samples wall time (a process preempted by
the load generator or by Redis looks busy). This script calls the same ASGI apps
(``_load_apps.py``) directly, ``--concurrency`` requests in flight on uvloop, and reads the
process's CPU time (all its threads: the audit worker's too) over ``--requests`` requests,
in ``--batches`` equal slices: a number other processes on the host move little, and the
cheapest slice (``min``) even less (a slice the host's other processes slowed is not
the cheapest). HTTP parsing is not in it (uvicorn adds about 20 us per request to every
portal alike). Rows: the bare endpoint, the guarded portal on the memory store and on
Redis, and on Redis with the ``sequence`` signal off (what the shipped policy's
``sequence`` costs: four more keyed hashes and their fingerprints in the call).

Then it knocks parts of the guarded request out, one more each row, to attribute the guard's
extra CPU (``--parts``):

* ``socket``: the Redis transport answers from memory through a future resolved on the
  next turn of the loop (everything but the socket and the server);
* ``engine``: the engine answers at once, through such a future (no command built, packed
  or read: what is left of the Redis call is the await itself);
* ``await``: the engine answers at once, no await at all;
* ``audit``: no audit trail;
* ``metrics``: no metrics.

The knock-outs patch private internals: they are for attribution here, nothing else.

    python benchmarks/bench_request_cpu.py [--requests 20000] [--concurrency 50] [--rounds 2]
        [--batches 5] [--parts] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

#: Knock-outs, in the order they pile up.
PARTS = ("socket", "engine", "await", "audit", "metrics")
ANSWER = [b"allowed", b"", -1, 0, 0, 0, 0, 2000, 1500, -1, -1, -1, -1, 0, 0, -1, 0, 0]


def _knock_out(app: Any, parts: set[str]) -> None:
    """Replace the parts named by stand-ins (see the module docstring)."""
    from nirguard._engine import Decision
    from nirguard._redis.loop import LoopNodes
    from nirguard._redis.wire import pack

    guard = app.state.guard
    path, engine = guard._path, guard._engine
    if "socket" in parts:

        async def answer(self: Any, node: Any, commands: Any, budget: float) -> Any:
            pack(commands)
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            replies = [[b"since", b"1"] if "since" in c else ANSWER for c in commands]
            loop.call_soon(future.set_result, replies)
            return await future

        LoopNodes.arun = answer  # type: ignore[method-assign]
    if "engine" in parts:
        allowed = Decision(outcome="allowed")

        async def decide(self: Any, request: Any) -> Decision:
            if "await" not in parts:
                future = asyncio.get_running_loop().create_future()
                asyncio.get_running_loop().call_soon(future.set_result, None)
                await future
            return allowed

        type(engine).adecide = decide
    if "audit" in parts:
        path.reports._audit = None
    if "metrics" in parts:
        path.reports.metrics = None


def _scope(body: bytes, practitioner: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5555),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/infopatient",
        "raw_path": b"/infopatient",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"x-practitioner", practitioner),
            (b"content-length", str(len(body)).encode()),
        ],
        "state": {},
    }


async def _one(app: Callable[..., Awaitable[None]], body: bytes, practitioner: bytes) -> int:
    sent = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # pragma: no cover - the app reads one body
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(body, practitioner), receive, send)
    return status[0]


def child(variant: str, parts: set[str], requests: int, concurrency: int, batches: int = 1) -> None:
    """One measurement in this (fresh) process: prints one JSON line."""
    import logging

    import _load_apps
    import uvloop

    from nirguard.testing import NIRGenerator, synthetic_registry

    logging.disable(logging.WARNING)
    known = list(synthetic_registry(size=20_000, seed=2022))
    registered = set(known)
    unknown = [v for v in NIRGenerator(4242).many(1100) if v not in registered][:1000]
    pool = known[:19_000] + unknown
    app = _load_apps.bare() if variant == "bare" else _load_apps.nirguard_app()
    if variant != "bare":
        _knock_out(app, parts)
    rng = random.Random(5)
    work = [
        (json.dumps({"nir": rng.choice(pool)}).encode(), b"rpps-%d" % rng.randint(1, 2000))
        for _ in range(requests + 200)
    ]

    size = requests // batches

    async def run() -> tuple[list[float], dict[int, int]]:
        for body, who in work[:200]:  # warm-up: connections, the library, caches
            await _one(app, body, who)
        counts: dict[int, int] = {}
        spent = []
        for n in range(batches):
            todo = iter(work[200 + n * size : 200 + (n + 1) * size])

            async def worker() -> None:
                for body, who in todo:  # noqa: B023 - each batch's workers share its todo
                    code = await _one(app, body, who)
                    counts[code] = counts.get(code, 0) + 1

            start = time.process_time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            spent.append(time.process_time() - start)
        return spent, counts

    spent, counts = uvloop.run(run())
    us = sum(spent) / (size * batches) * 1e6
    print(json.dumps({"us": us, "min": min(spent) / size * 1e6, "statuses": counts}))


#: Each variant's portal and environment (the nirguard ones: the demo portal's create_app).
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "bare": ("bare", {}),
    "memory": ("nirguard", {"BENCH_STORAGE": "memory://"}),
    "redis": ("nirguard", {}),
    "redis-sequence-off": ("nirguard", {"BENCH_POLICY_JSON": '{"sequence": null}'}),
}


def measure(variant: str, parts: list[str], args: argparse.Namespace) -> tuple[float, float]:
    """Mean and cheapest batch's CPU us per request of one fresh child process."""
    portal, env = VARIANTS[variant]
    command = [sys.executable, __file__, "--child", portal, "--knock-out", ",".join(parts)]
    command += ["--requests", str(args.requests), "--concurrency", str(args.concurrency)]
    command += ["--batches", str(args.batches)]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, **env}
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise SystemExit(f"{variant} {parts}: {done.stderr[-1500:]}")
    found = json.loads(lines[-1])
    return float(found["us"]), float(found["min"])


def _table(
    rows: list[tuple[str, str, list[str]]], found: dict[str, list[tuple[float, float]]]
) -> None:
    def mean(label: str) -> float:
        return statistics.mean(v for v, _ in found[label])

    def least(label: str) -> float:
        return min(m for _, m in found[label])

    bare, bare_min = mean("bare endpoint"), least("bare endpoint")
    head = f"{'portal':<32}{'CPU us/request':>15}{'runs':>16}{'over bare':>10}{'part':>7}"
    print(f"\n{head}{'min':>8}{'over bare':>10}{'x bare':>8}")
    previous = None
    for label, _, parts in rows:
        value, low = mean(label), least(label)
        runs = "/".join(f"{v:.0f}" for v, _ in found[label])
        part = "" if previous is None or not parts else f"{previous - value:.1f}"
        print(
            f"{label:<32}{value:>15.1f}{runs:>16}{value - bare:>10.1f}{part:>7}"
            f"{low:>8.1f}{low - bare_min:>10.1f}{bare_min / low:>8.2f}"
        )
        previous = value if label == "nirguard on Redis" or parts else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batches", type=int, default=5, help="timed slices per process")
    parser.add_argument("--parts", action="store_true", help="also knock parts out, one by one")
    parser.add_argument("--redis", default=None, help="Redis URL (default: a private server)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--knock-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        parts = {p for p in args.knock_out.split(",") if p}
        child(args.child, parts, args.requests, args.concurrency, args.batches)
        return
    rows: list[tuple[str, str, list[str]]] = [("bare endpoint", "bare", [])]
    rows.append(("nirguard on memory", "memory", []))
    rows.append(("nirguard on Redis, no sequence", "redis-sequence-off", []))
    rows.append(("nirguard on Redis", "redis", []))
    if args.parts:
        for n, part in enumerate(PARTS, 1):
            rows.append((f"  without {part}", "redis", list(PARTS[:n])))
    server = None
    if args.redis is None:
        from tests.redis_tools import RedisServer

        server = RedisServer().__enter__()
        args.redis = server.url(0)
    os.environ.update(
        BENCH_STORAGE=args.redis,
        BENCH_REDIS_URL=args.redis,
        BENCH_PREFIX=f"bench-cpu-{os.getpid()}",
        PORTAL_DATA_DIR=os.environ.get("PORTAL_DATA_DIR", "/tmp/nirguard-bench-request-cpu"),
        PYTHONPATH=str(HERE.parent / "src"),
    )
    load = os.getloadavg()
    print(f"bench_request_cpu: load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before")
    print(f"{args.requests} requests, {args.concurrency} in flight, {args.rounds} round(s)")
    print(f"{args.batches} timed batches per process; min: the cheapest batch of any round")
    try:
        found: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in rows}
        for _ in range(args.rounds):  # rounds: the host's noise shows as spread
            for label, variant, knocked in rows:
                found[label].append(measure(variant, knocked, args))
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    _table(rows, found)
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
