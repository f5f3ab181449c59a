"""Run one documentation page's blocks in order, as one reader's session (see docs_harness).

Started by ``tests/docs_harness.run_page`` as ``python docs_driver.py PLAN.json`` in the
page's working directory. Python blocks share one namespace and are compiled under the
Markdown file's own path and line numbers, so a traceback points at the page; shell blocks
run under bash, and what they export (and where they ``cd``) carries to the next block.
Standard library only: it runs in a directory that is not the checkout.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
import types
from pathlib import Path

SHELL_TIMEOUT_S = 300


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class FreshEnvironment(importlib.abc.MetaPathFinder):
    """Imports as in a fresh environment holding only what the page installed.

    The test environment has every extra installed; a reader's has the project and what the
    page's ``pip install`` lines brought. A top-level import of a module that only a
    distribution outside that set provides fails, as it would for the reader.
    """

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.providers = importlib.metadata.packages_distributions()

    def find_spec(
        self, name: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is not None or name in sys.stdlib_module_names:
            return None
        providers = {_canonical(d) for d in self.providers.get(name, [])}
        if providers and not providers & self.allowed:
            raise ModuleNotFoundError(
                f"No module named {name!r}: the docs test's environment has only what the page "
                f"installed, and {name!r} comes with {', '.join(sorted(providers))}",
                name=name,
            )
        return None


def _allowed(plan: dict[str, object]) -> set[str]:
    allowed = set(plan["installed"])  # type: ignore[call-overload]
    state = Path(str(plan["installed_file"]))
    if state.exists():
        allowed |= set(state.read_text(encoding="utf-8").split())
    return allowed


def _key_material() -> str | None:
    text = os.environ.get("NIRGUARD_KEY", "").strip()
    parts = text.split(":")
    return parts[-1] if len(parts) == 4 and len(parts[-1]) >= 40 else None


def _run_shell(step: dict[str, object]) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        env_file = Path(scratch) / "env"
        script = (
            f'set -eo pipefail\n{step["code"]}\nenv -0 > "{env_file}"\npwd > "{env_file}.pwd"\n'
        )
        env = dict(os.environ)
        if step.get("directive") == "install-only":
            env["NIRGUARD_DOCS_INSTALL_ONLY"] = "1"
        sys.stdout.flush()
        try:
            result = subprocess.run(
                ["bash", "-c", script], env=env, timeout=SHELL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            print(f"the shell block did not finish within {SHELL_TIMEOUT_S} s")
            return 1
        if result.returncode != 0:
            print(f"the shell block exited with status {result.returncode}")
            return result.returncode
        exported = env_file.read_bytes().split(b"\0")
        new = dict(item.decode().split("=", 1) for item in exported if b"=" in item)
        new.pop("NIRGUARD_DOCS_INSTALL_ONLY", None)
        for name in ("_", "SHLVL", "OLDPWD", "PWD"):
            new.pop(name, None)
            if name in os.environ:
                new[name] = os.environ[name]
        os.environ.clear()
        os.environ.update(new)
        os.chdir(Path(f"{env_file}.pwd").read_text(encoding="utf-8").strip())
    return 0


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    # The page's code runs as a reader's ``python`` session would: in a fresh ``__main__``
    # module (so pickle, dataclasses or ``ROOT_URLCONF=__name__`` find it), compiled without
    # this driver's ``from __future__`` flags, with the current directory first on the
    # import path and not this file's directory.
    main_module = types.ModuleType("__main__")
    sys.modules["__main__"] = main_module
    namespace: dict[str, object] = main_module.__dict__
    sys.path[0] = ""
    materials: set[str] = set()
    fresh = FreshEnvironment(_allowed(plan))
    sys.meta_path.insert(0, fresh)
    status = 0
    try:
        for step in plan["steps"]:
            print(f"--- {step['where']} ({step['kind']})", flush=True)
            if step["kind"] == "python":
                fresh.allowed = _allowed(plan)
                source = "\n" * int(step["line"]) + str(step["code"])
                try:
                    exec(compile(source, str(step["path"]), "exec", dont_inherit=True), namespace)
                except BaseException as exc:
                    # the traceback from the page's own frames on (this driver's frame dropped)
                    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
                    traceback.print_exception(type(exc), exc, tb, file=sys.stdout)
                    status = 1
            else:
                status = _run_shell(step)
            sys.stdout.flush()
            sys.stderr.flush()
            material = _key_material()
            if material:
                materials.add(material)
            if status:
                print(f"FAILED {step['where']} ({step['kind']} block)", flush=True)
                return status
        return 0
    finally:
        Path(plan["report"]).write_text(
            json.dumps({"key_materials": sorted(materials)}), encoding="utf-8"
        )


if __name__ == "__main__":
    sys.exit(main())
