"""examples/README.md's commands work as a reader runs them.

The reader's session: a fresh ``HOME``, no ``NIRGUARD_*``/``PORTAL_*`` variable, the project's
venv first on ``PATH``, and the page's set-up block run as written (a key, the review
token, the data directory). Each server command of the page (the blocks marked
``not-run: starts a server``) then runs as written under bash, from a directory laid out
like the repository root, with only its port changed to a free one (and the documented
Redis or collector address to the test's); the page's "Try it" blocks run against it as
written (same changes): a lookup, a wrong control key, the break-glass round trip and
the lockout it ends in. On the Redis portal, the ops blocks (``nirguard status`` /
``unlock`` and the Django commands) follow; the metrics blocks are scraped, or pushed to a
stand-in OpenTelemetry collector. Nothing may show a traceback or a NIR.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import find_nirs
from tests.docs_harness import Block, page_blocks

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "examples" / "README.md"
BLOCKS = page_blocks(PAGE)
DOCUMENTED_PORT = "8000"
DOCUMENTED_REDIS = "redis://127.0.0.1:6379/0"
DOCUMENTED_COLLECTOR = "http://127.0.0.1:4318"
SERVER_LINE = re.compile(
    r"^(?:\w+=\S+ )*(uvicorn|flask|python examples/django_portal/app.py runserver) "
)


def _marked(start: str, *, containing: str = "") -> list[Block]:
    return [
        b
        for b in BLOCKS
        if b.directive == "not-run" and b.reason.startswith(start) and containing in b.reason
    ]


SETUP = next(b for b in BLOCKS if b.kind == "shell" and "nirguard keygen" in b.code)
PORTALS = _marked("starts a server", containing="on a free port")
PROMETHEUS = _marked("starts a server", containing="scrapes /metrics")
OTLP = _marked("starts a server", containing="collector")
TRY_IT = _marked("needs a running portal")
OPS = _marked("needs the running portal on Redis") + _marked("needs the portal's store")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bash(
    code: str, work: Path, env: dict[str, str], **replace: str
) -> subprocess.CompletedProcess[str]:
    for old, new in replace.items():
        code = code.replace(old, new)
    return subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + code],
        cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _reader(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A directory laid out like the checkout, and the environment after the page's set-up."""
    work = tmp_path / "root"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIRGUARD_", "PYTEST_", "PORTAL_", "OTEL_", "XDG_"))
    }
    env["HOME"] = str(tmp_path / "home")
    # the page's commands on a host the whole suite loads: a fresh CLI process's first decision
    # can take longer than the 0.5 s default deadline there (a refusal the page does not
    # expect); the deadline has tests of its own (test_redis_faults.py)
    env["NIRGUARD_DEADLINE"] = "10"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    Path(env["HOME"]).mkdir()
    done = _bash(SETUP.code + '\nenv -0 > "$HOME/.env"', work, env)
    assert done.returncode == 0, done.stderr
    exported = (Path(env["HOME"]) / ".env").read_bytes().split(b"\0")
    after = dict(item.decode().split("=", 1) for item in exported if b"=" in item)
    for name in ("NIRGUARD_KEY", "PORTAL_REVIEW_TOKEN", "PORTAL_DATA_DIR"):
        env[name] = after[name]
    return work, env


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):  # a reloader's or a worker's child
        os.killpg(process.pid, signal.SIGKILL)


def _split(block: Block) -> tuple[str, str]:
    """The block up to the line that starts the server, and what it runs afterwards."""
    lines = block.code.splitlines()
    at = next(i for i, line in enumerate(lines) if SERVER_LINE.match(line))
    return "\n".join(lines[: at + 1]), "\n".join(lines[at + 1 :])


@contextlib.contextmanager
def _serving(block: Block, work: Path, env: dict[str, str], **replace: str) -> Iterator[Path]:
    import httpx

    code, _ = _split(block)
    for old, new in replace.items():
        code = code.replace(old, new)
    port = replace[DOCUMENTED_PORT]
    log_path = work.parent / f"server-{block.line}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", "set -eo pipefail\n" + code],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"{block.where}: the server exited:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{block.where}: no answer:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield log_path
    finally:
        _stop(process)
    log_text = log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log_text, log_text[-3000:]
    assert not find_nirs(log_text)


def _lines(path: Path, at_least: int = 0) -> list[dict[str, Any]]:
    """The file's JSON lines, once it has ``at_least`` (the guard writes off the request path)."""
    deadline = time.monotonic() + 15
    while True:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = [json.loads(line) for line in text.splitlines() if line]
        if len(lines) >= at_least or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_the_page_documents_every_portal_and_command() -> None:
    commands = " ".join(b.code for b in PORTALS)
    for needle in ("fastapi_portal", "--workers 2", "flask_portal", "django_portal"):
        assert needle in commands
    assert len(PORTALS) == 4
    assert len(TRY_IT) == 2  # a lookup and a wrong key; the break-glass round trip and lockout
    assert [len(PROMETHEUS), len(OTLP), len(OPS)] == [1, 1, 2]
    assert "nirguard unlock" in OPS[0].code and "nirguard_unlock" in OPS[1].code


def _try_it(work: Path, env: dict[str, str], port: str) -> None:
    data = Path(env["PORTAL_DATA_DIR"])
    tried = _bash(TRY_IT[0].code, work, env, **{DOCUMENTED_PORT: port})
    output = tried.stdout + tried.stderr
    assert tried.returncode == 0, output
    statuses = re.findall(r"^HTTP/[\d.]+ (\d{3})", tried.stdout, flags=re.MULTILINE)
    assert statuses == ["200", "422"], output
    assert '"invalid_nir"' in tried.stdout
    audit = data / "audit.jsonl"
    events = _lines(audit, 2)
    assert [e["outcome"] for e in events] == ["allowed", "invalid"]
    assert events[0]["patient"] in tried.stdout  # the block shows the trail's last lines
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700

    glass = _bash(TRY_IT[1].code, work, env, **{DOCUMENTED_PORT: port})
    output = glass.stdout + glass.stderr
    assert glass.returncode == 0, output
    codes = re.findall(r"^(\d{3})$", glass.stdout, flags=re.MULTILINE)
    assert codes == ["200"] * 8 + ["428", "403"], output
    assert re.search(r"^HTTP/[\d.]+ 200", glass.stdout, flags=re.MULTILINE), output
    [review] = json.loads(next(line for line in glass.stdout.splitlines() if line.startswith("[")))
    assert review["reason"] == {"code": "ETREAT", "text": "unconscious at the emergency desk"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", review["time"])
    alert = json.loads(glass.stdout.strip().splitlines()[-1])  # the lockout, from the alerts file
    assert (alert["practitioner"], alert["lockout"]) == ("dr-durand", True)
    assert isinstance(alert["retry_after"], int)
    # the portal's workers write their audit lines off the request path, each at its own
    # pace: the trail's order is the decisions' times, not the file's lines
    events = sorted(
        _lines(audit, 13),
        key=lambda e: datetime.fromisoformat(e["time"].replace("Z", "+00:00")),
    )
    outcomes = [e["outcome"] for e in events][2:]
    assert outcomes[:-1] == ["allowed"] * 8 + ["reason_required", "break_glass"]
    assert outcomes[-1] == "lockout"  # the refusal that started the lockout
    assert not find_nirs(output)
    for file in ("audit.jsonl", "alerts.jsonl", "break-glass.jsonl"):
        assert stat.S_IMODE((data / file).stat().st_mode) == 0o600
    assert not list(work.glob("*.jsonl"))  # nothing lands in the checkout


@pytest.mark.slow
@pytest.mark.parametrize("block", PORTALS, ids=[f"line{b.line}" for b in PORTALS])
def test_documented_portal_serves_lookups_break_glass_and_lockout(
    block: Block, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the page's Try-it block needs curl, which is not installed")
    work, env = _reader(tmp_path)
    port = str(_free_port())
    replace = {DOCUMENTED_PORT: port}
    on_redis = DOCUMENTED_REDIS in block.code
    if on_redis:
        replace[DOCUMENTED_REDIS] = request.getfixturevalue("redis_url")
        env["NIRGUARD_KEY_PREFIX"] = request.getfixturevalue("redis_prefix")  # deleted afterwards
    with _serving(block, work, env, **replace) as log_path:
        _try_it(work, env, port)
        if on_redis:
            _ops(work, {**env, "NIRGUARD_STORAGE": replace[DOCUMENTED_REDIS]})
    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert f"audit trail: {Path(env['PORTAL_DATA_DIR']) / 'audit.jsonl'}" in log, log
    assert "NIRGUARD_KEY is not set" not in log


def _ops(work: Path, env: dict[str, str]) -> None:
    """The page's status and unlock blocks, in one shell as the reader runs them."""
    done = _bash("\n".join(b.code for b in OPS), work, env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert re.search(r"^locked +yes, \d{4}-", done.stdout, flags=re.MULTILINE), output
    assert re.search(r"^locked +no$", done.stdout, flags=re.MULTILINE), output
    unlocks = [
        e
        for e in _lines(Path(env["PORTAL_DATA_DIR"]) / "audit.jsonl")
        if e["outcome"] == "unlocked"
    ]
    assert [(e["practitioner"], e["actor"]) for e in unlocks][-1] == (
        "dr-durand",
        "security-office",
    )
    assert unlocks[0]["note"] == "called Dr Durand back: a screening campaign"
    assert len(unlocks) == 2


@pytest.mark.slow
def test_documented_prometheus_endpoint_counts_the_decisions(tmp_path: Path) -> None:
    [block] = PROMETHEUS
    work, env = _reader(tmp_path)
    port = str(_free_port())
    with _serving(block, work, env, **{DOCUMENTED_PORT: port}):
        assert _bash(TRY_IT[0].code, work, env, **{DOCUMENTED_PORT: port}).returncode == 0
        _, scrape = _split(block)
        scraped = _bash(scrape, work, env, **{DOCUMENTED_PORT: port})
    assert scraped.returncode == 0, scraped.stderr
    counts = {
        re.search(r'nirguard_outcome="(\w+)"', line)[1]: float(line.rsplit(" ", 1)[1])  # type: ignore[index]
        for line in scraped.stdout.splitlines()
    }
    assert counts == {"allowed": 1.0, "invalid": 1.0}


class _Collector(ThreadingHTTPServer):
    """Stands in for an OpenTelemetry Collector: keeps each instance's latest decision count."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.decisions: dict[str, float] = {}


class _CollectorHandler(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportMetricsServiceRequest.FromString(body)
        for resource in request.resource_metrics:
            attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "nirguard.guard.decisions":
                        total = sum(p.as_int or p.as_double for p in metric.sum.data_points)
                        self.server.decisions[attributes["service.instance.id"]] = total
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.mark.slow
def test_documented_otlp_push_sums_every_worker(tmp_path: Path) -> None:
    import httpx

    [block] = OTLP
    work, env = _reader(tmp_path)
    port = str(_free_port())
    collector = _Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{collector.server_address[1]}"
    replace = {
        DOCUMENTED_PORT: port,
        DOCUMENTED_COLLECTOR: address,
        "INTERVAL=5000": "INTERVAL=300",
    }
    lookups = 24
    try:
        with _serving(block, work, env, **replace):
            patient = subprocess.run(
                [sys.executable, "-c", "from nirguard.testing import NIRGenerator as G; print(G(2022).many(1)[0])"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            for i in range(lookups):  # a new connection each: the workers share them out
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/infopatient",
                    json={"nir": patient},
                    headers={"X-Practitioner": f"dr-{i}", "Connection": "close"},
                )
                assert answer.status_code == 200
            deadline = time.monotonic() + 30
            while sum(collector.decisions.values()) < lookups and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        collector.shutdown()
        collector.server_close()
    assert sum(collector.decisions.values()) == lookups, collector.decisions
    assert 1 <= len(collector.decisions) <= 2  # one series per worker that served


WARNING_COMMANDS = {
    "fastapi": ("examples/fastapi_portal", "import app; app.create_app()"),
    "flask": ("examples/flask_portal", "import app; app.create_app()"),
    "django": ("examples/django_portal", "import app"),
}


@pytest.mark.parametrize("name", sorted(WARNING_COMMANDS))
def test_without_a_key_the_portal_says_how_to_set_one(name: str, tmp_path: Path) -> None:
    folder, code = WARNING_COMMANDS[name]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIRGUARD_", "PORTAL_"))}
    env["PORTAL_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / folder, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"WARNING portal: NIRGUARD_KEY is not set: using an ephemeral key", result.stderr
    )
    assert 'export NIRGUARD_KEY="$(nirguard keygen)"' in result.stderr
    assert f"INFO portal: audit trail: {tmp_path / 'data' / 'audit.jsonl'}" in result.stderr
    assert "GET /break-glass is not served: set PORTAL_REVIEW_TOKEN" in result.stderr


@pytest.mark.parametrize("name", sorted(WARNING_COMMANDS))
def test_a_shared_store_without_a_key_refuses_to_start(name: str, tmp_path: Path) -> None:
    folder, code = WARNING_COMMANDS[name]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIRGUARD_", "PORTAL_"))}
    env.update(PORTAL_DATA_DIR=str(tmp_path), NIRGUARD_STORAGE="redis://:hunter2@127.0.0.1:1/0")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / folder, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "NIRGUARD_KEY is not set: a shared store" in result.stderr
    assert "hunter2" not in result.stderr
