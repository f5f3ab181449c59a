"""The documentation runs as written, and the site lists every page.

Every ```python block of docs/quickstart.md and README.md is run on its own, in a fresh
interpreter (a subprocess started in an empty temporary directory), with ``NIRGUARD_KEY``
set to the text form of a newly generated key. A block preceded by the line
``<!-- docs-test: skip -->`` is not run (for illustrations that cannot run alone);
blocks in any other language (``sh``, ``text``, ``pycon``...) are never run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from nirguard import InvalidNIR, SecretKey

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXECUTED_FILES = (DOCS / "quickstart.md", ROOT / "README.md")
SKIP_MARK = "<!-- docs-test: skip -->"
SNIPPET_TIMEOUT_S = 120

_OPEN = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\s`]*)[^\n]*$")


@dataclass(frozen=True)
class Snippet:
    """One fenced code block: where it starts, its language, and its code."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skipped: bool

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def extract_blocks(path: Path, text: str) -> list[Snippet]:
    """Every fenced code block of a Markdown text, in order (CommonMark fences)."""
    lines = text.splitlines()
    blocks: list[Snippet] = []
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
        blocks.append(
            Snippet(
                path=path,
                line=i + 1,
                language=match["info"].lower(),
                code="\n".join(body) + "\n",
                skipped=previous == SKIP_MARK,
            )
        )
        i = j + 1
    return blocks


def python_snippets() -> list[Snippet]:
    snippets: list[Snippet] = []
    for path in EXECUTED_FILES:
        if path.exists():
            blocks = extract_blocks(path, path.read_text(encoding="utf-8"))
            snippets += [b for b in blocks if b.language in ("python", "py", "python3")]
    return snippets


SNIPPETS = python_snippets()


@pytest.fixture(scope="module")
def key_text() -> str:
    return SecretKey.generate("docs-test").to_text()


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs_as_written(snippet: Snippet, key_text: str, tmp_path: Path) -> None:
    if snippet.skipped:
        pytest.skip(f"marked {SKIP_MARK}")
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIRGUARD_")}
    env["NIRGUARD_KEY"] = key_text
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, (
        f"{snippet.id} failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
    )
    # The key must never be echoed by an example.
    assert key_text.rsplit(":", 1)[-1] not in result.stdout + result.stderr


def test_quickstart_has_runnable_examples() -> None:
    quickstart = [s for s in SNIPPETS if s.path.name == "quickstart.md" and not s.skipped]
    assert len(quickstart) >= 5
    code = "".join(s.code for s in quickstart)
    for name in ("nir.validate", "Pseudonymiser", "LookupGuard", "protect"):
        assert name in code, f"the quickstart no longer shows {name}"


def test_extract_blocks_reads_fences_like_markdown() -> None:
    text = (
        "intro\n"
        "```python\nx = 1\n```\n"
        "<!-- docs-test: skip -->\n\n"
        "```python title\ny = undefined\n```\n"
        "```sh\necho no\n```\n"
        "1. item\n\n    ```python\n    if True:\n        z = 3\n    ```\n"
        "````markdown\n```python\nnot a block\n```\n````\n"
    )
    blocks = extract_blocks(Path("x.md"), text)
    assert [(b.line, b.language, b.skipped) for b in blocks] == [
        (2, "python", False),
        (7, "python", True),
        (10, "sh", False),
        (15, "python", False),
        (19, "markdown", False),
    ]
    assert blocks[0].code == "x = 1\n"
    assert blocks[3].code == "if True:\n    z = 3\n"
    assert blocks[4].code == "```python\nnot a block\n```\n"


def _nav_files(node: object) -> list[str]:
    """Every Markdown file named in a mkdocs ``nav`` tree."""
    if isinstance(node, str):
        return [node] if node.endswith(".md") else []
    if isinstance(node, list):
        return [f for item in node for f in _nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return []


def test_mkdocs_nav_covers_every_page() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the docs extra (mkdocs)")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    docs_dir = ROOT / config.get("docs_dir", "docs")
    nav = _nav_files(config["nav"])
    pages = sorted(p.relative_to(docs_dir).as_posix() for p in docs_dir.rglob("*.md"))
    assert sorted(set(nav) - set(pages)) == [], "the nav names pages that do not exist"
    assert sorted(set(pages) - set(nav)) == [], "pages missing from the mkdocs nav"
    assert len(nav) == len(set(nav)), "a page appears twice in the nav"


def test_rules_page_names_every_invalid_nir_code() -> None:
    rules = (DOCS / "rules.md").read_text(encoding="utf-8")
    missing = [code for code in sorted(InvalidNIR.codes) if f"rejected: `{code}`" not in rules]
    assert missing == [], "codes the rules page never gives as a verdict"
