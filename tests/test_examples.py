"""examples/README.md's commands work as a user runs them.

Each server command of the page (the blocks marked ``not-run: starts a server``) runs as
written under bash, from a directory laid out like the repository root, with the setup the
page states (a key in ``NIRGUARD_KEY``) and only its port changed to a free one; then the
page's "Try it" block runs against it, as written (same port change). The portal must
answer the lookup, refuse the wrong control key with 422, log where its audit trail goes,
and write that trail (mode 0600, no NIR); it must never show a traceback or a NIR.
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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nirguard import SecretKey
from tests.conftest import find_nirs
from tests.docs_harness import Block, page_blocks
from tests.example_helpers import load_example

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "examples" / "README.md"
BLOCKS = page_blocks(PAGE)
SERVERS = [b for b in BLOCKS if b.directive == "not-run" and b.reason.startswith("starts a server")]
TRY_IT = [b for b in BLOCKS if b.directive == "not-run" and b.reason.startswith("needs a running")]
DOCUMENTED_PORT = "8000"
DOCUMENTED_REDIS = "redis://127.0.0.1:6379/0"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _user_env(**extra: str) -> dict[str, str]:
    """The environment of a user in the project's venv: its bin first, no NIRGUARD_* set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NIRGUARD_", "PYTEST_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def _checkout_like(tmp_path: Path) -> Path:
    """A directory where the page's relative paths (examples/...) resolve, as at the root."""
    work = tmp_path / "root"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return work


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


@contextlib.contextmanager
def _serving(block: Block, work: Path, env: dict[str, str], port: int) -> Iterator[Path]:
    import httpx

    code = block.code.replace(DOCUMENTED_PORT, str(port))
    log_path = work.parent / "server.log"
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


def test_the_page_documents_every_portal() -> None:
    commands = " ".join(b.code for b in SERVERS)
    for needle in ("fastapi_portal", "--workers 2", "flask_portal", "django_portal"):
        assert needle in commands
    assert len(TRY_IT) == 2  # a lookup and a wrong key; then the break-glass round trip


@pytest.mark.slow
@pytest.mark.parametrize("block", SERVERS, ids=[f"line{b.line}" for b in SERVERS])
def test_documented_command_serves_a_guarded_lookup(
    block: Block, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("the page's Try-it block needs curl, which is not installed")
    work = _checkout_like(tmp_path)
    # the page's setup: export NIRGUARD_KEY="$(nirguard keygen)"
    env = _user_env(NIRGUARD_KEY=SecretKey.generate("examples").to_text())
    if DOCUMENTED_REDIS in block.code:
        redis_url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")  # its keys are deleted afterwards
        block = Block(block.path, block.line, block.language,
                      block.code.replace(DOCUMENTED_REDIS, redis_url), block.directive)  # fmt: skip
        env["NIRGUARD_KEY_PREFIX"] = prefix
    port = _free_port()
    with _serving(block, work, env, port) as log_path:
        tried = subprocess.run(
            ["bash", "-c", "set -eo pipefail\n" + TRY_IT[0].code.replace(DOCUMENTED_PORT, str(port))],
            cwd=work, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        audited = len(_audit_lines(work))
        glass = subprocess.run(
            ["bash", "-c", "set -eo pipefail\n" + TRY_IT[1].code.replace(DOCUMENTED_PORT, str(port))],
            cwd=work, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    glass_output = glass.stdout + glass.stderr
    assert glass.returncode == 0, glass_output
    codes = re.findall(r"^(\d{3})$", glass.stdout, flags=re.MULTILINE)
    assert codes == ["200"] * 8 + ["428"], glass_output
    assert re.search(r"^HTTP/[\d.]+ 200", glass.stdout, flags=re.MULTILINE), glass_output
    assert '"ETREAT"' in glass.stdout  # the review queue shows the grant
    after = [e["outcome"] for e in _audit_lines(work)[audited:]]
    assert after == ["allowed"] * 8 + ["reason_required", "break_glass"], after
    assert not find_nirs(glass_output)
    output = tried.stdout + tried.stderr
    assert tried.returncode == 0, output
    statuses = re.findall(r"^HTTP/[\d.]+ (\d{3})", tried.stdout, flags=re.MULTILINE)
    assert statuses == ["200", "422"], output
    assert '"invalid_nir"' in tried.stdout

    log = log_path.read_text(encoding="utf-8", errors="replace")
    audit = work / "nirguard-audit.jsonl"
    assert f"audit trail: {audit.resolve()}" in log, log
    assert "NIRGUARD_KEY is not set" not in log
    assert "Traceback" not in log
    assert not find_nirs(log)
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    events = _audit_lines(work)[:2]
    assert [e["outcome"] for e in events] == ["allowed", "invalid"]
    assert not find_nirs(audit.read_text(encoding="utf-8"))
    # the Try-it block shows the trail's last lines: pseudonyms, never the number
    assert events[0]["patient"] in tried.stdout


def _audit_lines(work: Path) -> list[dict[str, Any]]:
    path = work / "nirguard-audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


WARNING_COMMANDS = {
    "fastapi": ("examples/fastapi_portal", "import app; app.create_app()"),
    "flask": ("examples/flask_portal", "import app; app.create_app()"),
    "django": ("examples/django_portal", "import app"),
}


@pytest.mark.parametrize("name", sorted(WARNING_COMMANDS))
def test_without_a_key_the_portal_says_how_to_set_one(name: str, tmp_path: Path) -> None:
    folder, code = WARNING_COMMANDS[name]
    env = _user_env(NIRGUARD_AUDIT_LOG=str(tmp_path / "audit.jsonl"))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / folder, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"WARNING portal: NIRGUARD_KEY is not set: using an ephemeral key", result.stderr
    )
    assert 'export NIRGUARD_KEY="$(nirguard keygen)"' in result.stderr
    assert f"INFO portal: audit trail: {tmp_path / 'audit.jsonl'}" in result.stderr


@pytest.mark.parametrize("folder", ["fastapi_portal", "flask_portal"])
def test_storage_options_come_from_the_environment(
    folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal = load_example(folder)
    monkeypatch.delenv("NIRGUARD_STORAGE_OPTIONS", raising=False)
    assert portal.storage_options() is None
    monkeypatch.setenv(
        "NIRGUARD_STORAGE_OPTIONS", '{"socket_timeout": 1, "health_check_interval": 30}'
    )
    assert portal.storage_options() == {"socket_timeout": 1, "health_check_interval": 30}
    for bad in ('{"password": "hunter2"', '["hunter2"]'):
        monkeypatch.setenv("NIRGUARD_STORAGE_OPTIONS", bad)
        with pytest.raises(ValueError, match="must be a JSON object") as caught:
            portal.storage_options()
        assert "hunter2" not in str(caught.value)
