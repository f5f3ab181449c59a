"""A portal team's first day, in CI: a clean clone of HEAD and fresh virtual environments.

Run by ``.ci/run`` (``python3 .ci/fresh_clone.py``), with the README's two set-up
commands in ``DEMO_COMMAND`` and ``TEST_COMMAND`` (``.ci/run`` checks that the README
still shows them). Standard library only. In a temporary directory:

1. ``git clone`` of HEAD (what is committed, nothing else of the working tree);
2. the README's demo command and test command, as written (``eval`` in bash): a fresh
   ``.venv``, the demo, then the whole test suite;
3. lint and types, and the README's docs command (``mkdocs build --strict``);
4. the install story of ``docs/quickstart.md`` for a machine without a checkout: a wheel
   built from the clone (``pip wheel --no-deps -w dist .``), installed with the
   ``examples`` extra alone in a second fresh venv, which then serves each example
   portal with the command ``examples/README.md`` gives and answers one lookup (and
   ``GET /metrics`` with ``PORTAL_METRICS=prometheus``), and runs the ops commands
   (``nirguard status`` / ``unlock``, the Django ``nirguard_status``) on Redis.

Each step prints what it runs; the last line counts the checks (``N passed, N failed``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS: list[tuple[str, bool]] = []


def step(title: str) -> None:
    print(f"\n== fresh clone: {title}", flush=True)


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, ok))
    print(
        f"{'ok' if ok else 'FAILED'}: {name}" + (f"\n{detail}" if detail and not ok else ""),
        flush=True,
    )


def run(command: str, cwd: Path, env: dict[str, str], *, timeout: float = 1800) -> bool:
    """Run ``command`` under bash as written, its output going to CI's log."""
    print(f"$ {command}", flush=True)
    done = subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + command],
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )
    return done.returncode == 0


def blocks(page: Path) -> list[tuple[str, str]]:
    """``(marker reason, code)`` of each fenced shell block of a Markdown page."""
    found = []
    text = page.read_text(encoding="utf-8")
    for match in re.finditer(
        r"(?:<!--\s*[a-z-]+:\s*(?P<why>.*?)\s*-->\s*\n)?```(?:sh|bash)\n(?P<code>.*?)```",
        text,
        re.S,
    ):
        found.append((match["why"] or "", match["code"]))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(
    url: str, body: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextlib.contextmanager
def serving(command: str, cwd: Path, env: dict[str, str], port: int, log: Path) -> Iterator[bool]:
    print(f"$ {command.strip()}  &", flush=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    up = False
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                if http(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                    up = True
                    break
            time.sleep(0.3)
        yield up
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def clone_and_readme(work: Path, env: dict[str, str]) -> Path:
    step("a clean clone of HEAD")
    clone = work / "nirguard"
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    check(
        "git clone",
        run(
            f"git clone -q --no-local '{REPO}' '{clone}' && git -C '{clone}' checkout -q {head}",
            work,
            env,
        ),
    )
    step("the README's demo command, as written (with .ci/run's size flags)")
    demo = f"{env['DEMO_COMMAND']} {env.get('DEMO_FLAGS', '')}".strip()
    check("README demo command", run(demo, clone, env, timeout=900))
    step("the README's test command, as written (the whole suite)")
    check("README test command", run(env["TEST_COMMAND"], clone, env, timeout=2400))
    return clone


def lint_and_docs(clone: Path, env: dict[str, str]) -> None:
    step("lint, types, and the README's docs command")
    check("dev extra", run(".venv/bin/pip install -q -e '.[dev]'", clone, env))
    for command in (
        ".venv/bin/ruff check .",
        ".venv/bin/ruff format --check .",
        ".venv/bin/mypy --strict src/",
        ".venv/bin/mypy --strict typing_tests/",
    ):
        check(command, run(command, clone, env))
    readme = (clone / "README.md").read_text(encoding="utf-8")
    docs = re.search(
        r"`(\.venv/bin/pip install -e '\.\[docs\]' && \.venv/bin/mkdocs build --strict)`", readme
    )
    check("the README names its docs command", docs is not None)
    if docs:  # no --quiet: it would hide the warnings --strict counts
        check("README docs command (mkdocs build --strict)", run(docs[1], clone, env))


def wheel_venv(clone: Path, work: Path, env: dict[str, str]) -> dict[str, str]:
    step("a wheel built from the clone, installed with the examples extra in a fresh venv")
    pyproject = (clone / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)[1]  # type: ignore[index]
    wheel = clone / "dist" / f"nirguard-{version}-py3-none-any.whl"
    venv = work / "wheel-venv"
    check(
        "pip wheel --no-deps -w dist .",
        run(".venv/bin/python -m pip wheel -q --no-deps -w dist .", clone, env),
    )
    check("fresh venv", run(f"python3 -m venv '{venv}'", work, env))
    check(
        "wheel with [examples]",
        run(f"'{venv}/bin/python' -m pip install -q '{wheel}[examples]'", work, env),
    )
    reader = {
        k: v for k, v in env.items() if not k.startswith(("NIRGUARD_", "PORTAL_", "VIRTUAL_ENV"))
    }
    reader["NIRGUARD_TEST_REDIS_URL"] = env[
        "NIRGUARD_TEST_REDIS_URL"
    ]  # this script's, not read by nirguard
    reader["PATH"] = f"{venv}/bin:{reader['PATH']}"
    reader["HOME"] = str(work / "home")
    (work / "home").mkdir()
    where = subprocess.run(
        [f"{venv}/bin/python", "-c", "import nirguard; print(nirguard.__file__)"],
        cwd=clone, env=reader, capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    check("nirguard comes from the wheel, not the clone", str(venv) in where, where)
    reader["NIRGUARD_KEY"] = subprocess.run(
        [f"{venv}/bin/nirguard", "keygen"], env=reader, capture_output=True, text=True, check=True
    ).stdout.strip()
    reader["PORTAL_REVIEW_TOKEN"] = secrets.token_urlsafe(16)
    reader["PORTAL_DATA_DIR"] = str(work / "portal-data")
    return reader


def portals(clone: Path, work: Path, env: dict[str, str]) -> None:
    step("each example portal, as examples/README.md starts it, answers one lookup")
    patient = subprocess.run(
        ["python", "-c", "from nirguard.testing import NIRGenerator; print(NIRGenerator(2022).many(1)[0])"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    servers = [
        code
        for why, code in blocks(clone / "examples" / "README.md")
        if why.startswith("starts a server")
    ]
    for n, code in enumerate(servers):
        port = free_port()
        code = code.replace("8000", str(port))
        if "4318" in code:  # the OTLP push needs a collector: tests/test_examples.py has a stand-in
            continue
        command = code.split("\ncurl", 1)[0]
        server_env = dict(env)
        if "redis://" in code:
            server_env["NIRGUARD_KEY_PREFIX"] = f"fresh-clone-{secrets.token_hex(4)}"
            command = command.replace("redis://127.0.0.1:6379/0", env["NIRGUARD_TEST_REDIS_URL"])
        name = command.strip().splitlines()[-1]
        log = work / f"server-{n}.log"
        with serving(command, clone, server_env, port, log) as up:
            check(f"starts: {name}", up, log.read_text(errors="replace")[-2000:])
            if not up:
                continue
            status, body = http(
                f"http://127.0.0.1:{port}/infopatient",
                {"nir": patient},
                {"X-Practitioner": "dr-first-day"},
            )
            check(f"one lookup: {name}", status == 200 and "last_name" in body, f"{status} {body}")
            if "PORTAL_METRICS=prometheus" in code:
                status, body = http(f"http://127.0.0.1:{port}/metrics")
                check(
                    "GET /metrics counts the lookup",
                    "nirguard_guard_decisions_total" in body,
                    body[-1000:],
                )
            if "redis://" in code:
                ops(clone, work, server_env)


def ops(clone: Path, work: Path, env: dict[str, str]) -> None:
    step("the ops commands on the portal's Redis")
    ops_env = {
        **env,
        "NIRGUARD_STORAGE": env["NIRGUARD_TEST_REDIS_URL"],
        "NIRGUARD_AUDIT_LOG": str(work / "ops-audit.jsonl"),
    }
    check("nirguard status", run("nirguard status dr-first-day --json", clone, ops_env))
    check(
        "nirguard unlock (audited)",
        run("nirguard unlock dr-first-day --reason 'first day' --by ci", clone, ops_env),
    )
    audit = (
        (work / "ops-audit.jsonl").read_text(encoding="utf-8")
        if (work / "ops-audit.jsonl").exists()
        else ""
    )
    check("the unlock is in the audit trail", '"unlocked"' in audit, audit)
    command = "python examples/django_portal/app.py nirguard_status dr-first-day"
    check("Django nirguard_status", run(command, clone, ops_env))
    forget = (  # the portal's keys, under its prefix of its own: never anything else
        "import os, redis; r = redis.Redis.from_url(os.environ['NIRGUARD_STORAGE']); "
        "keys = list(r.scan_iter(match=os.environ['NIRGUARD_KEY_PREFIX'] + ':*', count=1000)); "
        "keys and r.delete(*keys)"
    )
    subprocess.run(["python", "-c", forget], env=ops_env, check=False)


def main() -> int:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    for name in ("DEMO_COMMAND", "TEST_COMMAND", "NIRGUARD_TEST_REDIS_URL"):
        if not env.get(name):
            print(f"fresh clone: {name} is not set (.ci/run sets it)", file=sys.stderr)
            return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nirguard-fresh-") as scratch:
        work = Path(scratch)
        clone = clone_and_readme(work, env)
        if RESULTS[0][1] and (clone / ".venv" / "bin" / "python").exists():
            lint_and_docs(clone, env)
            before = len(RESULTS)
            reader = wheel_venv(clone, work, env)
            if all(ok for _, ok in RESULTS[before:]):
                portals(clone, work, reader)
        shutil.rmtree(work / "portal-data", ignore_errors=True)
    failed = [name for name, ok in RESULTS if not ok]
    print(
        f"\nfresh clone: {time.monotonic() - started:.0f} s; failed: {', '.join(failed) or 'none'}"
    )
    print(f"checks: {len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
