"""Run the code blocks of the Markdown documentation as a reader would paste them.

Used by ``tests/test_docs.py`` (and ``tests/test_examples.py``). The rules, also stated in
``CONTRIBUTING`` terms at the top of ``tests/test_docs.py``:

* Every fenced block of a page is accounted for. ``python`` blocks and ``sh``/``bash``
  blocks are run; a block in any other language (``text``, ``http``, ``json``, ``sql``...)
  is an illustration and is not run; a block without a language is an error (say what it is).
* A ``python`` or shell block that must not run carries, on the line right above its fence,
  ``<!-- not-run: why -->``; a shell block of which only the install steps (``python -m venv``,
  ``pip install``) should run carries ``<!-- install-only: why -->``. Both are reported as
  skips with their reason, never skipped silently.
* The blocks of one page run in order, in one session, as a reader following the page would:
  a fresh interpreter whose current directory is an empty temporary directory, one Python
  namespace shared by the page's Python blocks, and the environment changes of its shell
  blocks (``export NIRGUARD_KEY=...``, ``cd``) carried to the blocks after them. The session
  starts with no ``NIRGUARD_*``, ``PORTAL_*`` or ``OTEL_*`` variable: a page that needs one must set it, where the reader
  sees it.
* Shell blocks run under ``bash`` with ``set -eo pipefail``. The virtual environment's
  commands (``python``, ``pip``, ``nirguard``, ``uvicorn``...) are the test's own, through
  small wrappers: ``python -m venv DIR`` makes ``DIR/bin`` with the same wrappers instead of a
  new environment, and ``pip install`` installs nothing but checks that what it names exists
  (the extras in pyproject.toml, paths taken from the checkout) and is installed here, with
  the versions the requirements ask for. Python blocks may then import only what a fresh
  environment would hold: the project and its dependencies, plus what the page's own
  ``pip install`` lines brought (extras included); importing anything else fails, as it
  would for the reader.
* A failure names the page and the line: Python tracebacks point into the Markdown file
  itself, and the harness prints ``FAILED <page>:<line>`` for the block that failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path

from tests.docs_shim import project_closure

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().with_name("docs_driver.py")
SHIM = Path(__file__).resolve().with_name("docs_shim.py")

PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell"})
# Fence languages that declare a block as an illustration: never run.
ILLUSTRATION_LANGUAGES = frozenset(
    {"text", "http", "json", "jsonl", "sql", "java", "toml", "yaml", "ini", "csv", "pycon",
     "console", "markdown", "diff"}
)  # fmt: skip
DIRECTIVE = re.compile(r"^<!--\s*(?P<name>[a-z-]+)\s*:\s*(?P<reason>.*?)\s*-->$")
DIRECTIVES = frozenset({"not-run", "install-only"})

_OPEN = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)[^\n]*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its language, its code, its directive."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    directive: str | None = None  # "not-run", "install-only", or an unknown name (an error)
    reason: str = ""

    @property
    def where(self) -> str:
        try:
            name = self.path.resolve().relative_to(ROOT).as_posix()
        except ValueError:
            name = self.path.name
        return f"{name}:{self.line}"

    @property
    def kind(self) -> str:
        """``python``, ``shell``, ``illustration`` or ``unknown`` (no or an unlisted language)."""
        if self.language in PYTHON_LANGUAGES:
            return "python"
        if self.language in SHELL_LANGUAGES:
            return "shell"
        if self.language in ILLUSTRATION_LANGUAGES:
            return "illustration"
        return "unknown"

    @property
    def runs(self) -> bool:
        return self.kind in ("python", "shell") and self.directive != "not-run"


def extract_blocks(path: Path, text: str) -> list[Block]:
    """Every fenced code block of a Markdown text, in order (CommonMark fences)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, indent = match["fence"], len(match["indent"])
        closing = re.compile(rf"^[ ]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            line = lines[j]
            # Strip up to the opening fence's indentation from each line (as CommonMark does).
            strip = min(indent, len(line) - len(line.lstrip(" ")))
            body.append(line[strip:])
            j += 1
        previous = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        directive = DIRECTIVE.match(previous)
        blocks.append(
            Block(
                path=path,
                line=i + 1,
                language=match["info"].lower(),
                code="\n".join(body) + "\n",
                directive=directive["name"] if directive else None,
                reason=directive["reason"] if directive else "",
            )
        )
        i = j + 1
    return blocks


def page_blocks(path: Path) -> list[Block]:
    return extract_blocks(path, path.read_text(encoding="utf-8"))


def problems(blocks: list[Block]) -> list[str]:
    """What is wrong with how a page's blocks are marked (empty when all is well)."""
    found = []
    for block in blocks:
        if block.kind == "unknown":
            found.append(
                f"{block.where}: fence language {block.language or '(none)'!r}: give the block a "
                f"language (python, sh, or an illustration such as text, http, json)"
            )
        if block.directive is None:
            continue
        if block.directive not in DIRECTIVES:
            found.append(f"{block.where}: unknown directive {block.directive!r}")
        elif not block.reason:
            found.append(f"{block.where}: <!-- {block.directive}: ... --> needs a reason")
        elif block.kind not in ("python", "shell"):
            found.append(
                f"{block.where}: {block.directive} on a {block.language} block (never run)"
            )
        elif block.directive == "install-only" and block.kind != "shell":
            found.append(f"{block.where}: install-only applies to shell blocks")
    return found


# -- what a block that does not run can still be checked for ------------------------------------

_NAMED_FILE = re.compile(r"\b(?:tests|examples|benchmarks|docs|src|tools|\.ci)/[\w./-]*\w")
_EXCERPT = re.compile(r"an excerpt of (?P<path>[\w./-]*\w)")
_SUBCOMMAND = re.compile(
    r"(?:^|[;&|(]\s*|\$\(\s*|\bdo\s+|\bthen\s+)(?:[\w./-]*/)?nirguard\s+(?P<name>[a-z][a-z-]*)"
)


def _without_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def unsound(block: Block) -> list[str]:
    """What is wrong with a block that does not run (in whole or in part).

    It must still parse (``compile`` for Python, ``bash -n`` for shell), every file its
    reason names must exist, and an "excerpt of FILE" must still be in FILE, line for
    line (comments and indentation aside): a block kept from running must not rot.
    """
    found = []
    if block.kind == "python":
        try:
            compile(textwrap.dedent(block.code), block.where, "exec", dont_inherit=True)
        except SyntaxError as exc:
            found.append(f"{block.where}: does not parse: {exc.msg} (block line {exc.lineno})")
    elif block.kind == "shell":
        checked = subprocess.run(
            ["bash", "-n", "-c", block.code], capture_output=True, text=True, check=False
        )
        if checked.returncode:
            found.append(f"{block.where}: bash -n: {checked.stderr.strip()}")
    for name in _NAMED_FILE.findall(block.reason):
        if not (ROOT / name).exists():
            found.append(f"{block.where}: its reason names {name}, which does not exist")
    excerpt = _EXCERPT.search(block.reason)
    if excerpt and (ROOT / excerpt["path"]).is_file():
        source = {
            _without_comment(line)
            for line in (ROOT / excerpt["path"]).read_text("utf-8").splitlines()
        }
        for line in block.code.splitlines():
            if _without_comment(line) and _without_comment(line) not in source:
                found.append(f"{block.where}: not in {excerpt['path']} any more: {line.strip()!r}")
    return found


def subcommands_named(block: Block) -> list[str]:
    """The ``nirguard`` subcommands a shell block runs (``nirguard keygen``, ``.venv/bin/nirguard x``)."""
    if block.kind != "shell":
        return []
    return [m["name"] for line in block.code.splitlines() for m in _SUBCOMMAND.finditer(line)]


# -- running a page ------------------------------------------------------------------------------


def _write_executable(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


_NOT_RUN = (
    'if [ -n "$NIRGUARD_DOCS_INSTALL_ONLY" ]; then\n'
    '  echo "docs test: not run (install-only block): $(basename "$0") $*" >&2; exit 0\n'
    "fi\n"
)


def make_shims(directory: Path) -> Path:
    """Wrappers for the test environment's commands, with ``venv`` and ``pip`` intercepted."""
    directory.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    bindir = Path(python).parent
    for name in ("python", "python3", f"python3.{sys.version_info.minor}"):
        _write_executable(
            directory / name,
            "#!/bin/sh\n"
            'case "$1 $2" in\n'
            f'  "-m venv") shift 2; exec "{python}" "{SHIM}" venv "$@";;\n'
            f'  "-m pip") shift 2; exec "{python}" "{SHIM}" pip "$@";;\n'
            "esac\n" + _NOT_RUN + f'exec "{python}" "$@"\n',
        )
    for name in ("pip", "pip3"):
        _write_executable(directory / name, f'#!/bin/sh\nexec "{python}" "{SHIM}" pip "$@"\n')
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    for name in sorted(scripts):
        real = bindir / name
        if real.is_file() and not (directory / name).exists():
            _write_executable(directory / name, "#!/bin/sh\n" + _NOT_RUN + f'exec "{real}" "$@"\n')
    return directory


def page_environment(shims: Path) -> dict[str, str]:
    """A reader's environment: no NIRGUARD_*, PORTAL_* or OTEL_* variable (nor the test's
    own), the shims first on PATH."""
    bindir = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NIRGUARD_", "PORTAL_", "OTEL_", "PYTEST_", "COV_"))
        and k not in ("VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "FLASK_APP")
    }
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([str(shims), *path])
    env["NIRGUARD_DOCS_SHIMS"] = str(shims)
    env["NIRGUARD_DOCS_ROOT"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@dataclass(frozen=True)
class PageRun:
    returncode: int
    output: str
    key_materials: tuple[str, ...]  # the key material NIRGUARD_KEY held during the run

    def failure(self) -> str | None:
        if self.returncode == 0:
            return None
        where = re.findall(r"^FAILED (\S+)", self.output, flags=re.MULTILINE)
        head = f"{where[-1]} failed" if where else f"the page failed (exit {self.returncode})"
        return f"{head}:\n{self.output[-6000:]}"


def run_page(
    blocks: list[Block],
    workdir: Path,
    *,
    timeout: float = 900,
    extra_env: dict[str, str] | None = None,
) -> PageRun:
    """Run the runnable blocks of one page in order, in one session, in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    shims = make_shims(workdir.parent / f"{workdir.name}-bin")
    plan = workdir.parent / f"{workdir.name}-plan.json"
    report = workdir.parent / f"{workdir.name}-report.json"
    steps = [
        {**asdict(b), "path": str(b.path.resolve()), "where": b.where, "kind": b.kind}
        for b in blocks
        if b.runs
    ]
    installed = workdir.parent / f"{workdir.name}-installed.txt"
    plan.write_text(
        json.dumps(
            {
                "steps": steps,
                "report": str(report),
                # a reader of any page has installed the project (the quickstart's first step)
                "installed": sorted(project_closure(set())),
                "installed_file": str(installed),
            }
        ),
        encoding="utf-8",
    )
    env = page_environment(shims)
    env["NIRGUARD_DOCS_INSTALLED"] = str(installed)
    env.update(extra_env or {})
    result = subprocess.run(
        [sys.executable, str(DRIVER), str(plan)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    materials: tuple[str, ...] = ()
    if report.exists():
        materials = tuple(json.loads(report.read_text(encoding="utf-8"))["key_materials"])
    return PageRun(result.returncode, result.stdout, materials)


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
