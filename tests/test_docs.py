"""The documentation runs as written, and the site lists every page.

Every code block of README.md, docs/ and examples/README.md is accounted for, and the
runnable ones run: one test per page runs its ``python`` and ``sh``/``bash`` blocks in
order, in one fresh session (an empty temporary directory as the current directory, no
``NIRGUARD_*`` variable but those the page itself sets), and names the page and line of
the block that fails. The rules, and the ``<!-- not-run: why -->`` and
``<!-- install-only: why -->`` markers, are in ``tests/docs_harness.py``. New blocks are
picked up automatically: to check the docs alone, ``python -m pytest tests/test_docs.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nirguard import InvalidNIR
from nirguard.cli import build_parser
from tests.docs_harness import (
    ROOT,
    Block,
    extract_blocks,
    page_blocks,
    problems,
    run_page,
    subcommands_named,
    unsound,
)

DOCS = ROOT / "docs"
PAGES = sorted(
    [ROOT / "README.md", ROOT / "examples" / "README.md", *DOCS.rglob("*.md")],
    key=lambda p: p.relative_to(ROOT).as_posix(),
)
BLOCKS = {page: page_blocks(page) for page in PAGES}
RUNNABLE = [page for page, blocks in BLOCKS.items() if any(b.runs for b in blocks)]
MARKED = [
    b for blocks in BLOCKS.values() for b in blocks if b.directive in ("not-run", "install-only")
]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", RUNNABLE, ids=[_name(p) for p in RUNNABLE])
def test_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    run = run_page(BLOCKS[page], tmp_path / "work")
    failure = run.failure()
    assert failure is None, failure
    # A key the page put in NIRGUARD_KEY is never echoed by its examples.
    for material in run.key_materials:
        assert material not in run.output, "an example printed the key"


@pytest.mark.parametrize("block", MARKED, ids=[b.where for b in MARKED])
def test_marked_block_has_not_rotted(block: Block) -> None:
    """A block kept from running still parses, names files that exist, quotes its source."""
    assert unsound(block) == []


def test_unsound_finds_what_rots(tmp_path: Path) -> None:
    blocks = extract_blocks(
        tmp_path / "page.md",
        "<!-- not-run: needs a server; tests/test_no_such_file.py runs it -->\n"
        "```python\ndef broken(:\n```\n"
        "<!-- not-run: starts a server -->\n```sh\nif then fi\n```\n"
        "<!-- not-run: an excerpt of examples/fastapi_portal/app.py -->\n"
        "```python\ndef create_app(  # a comment that differs\ndef no_such_function():\n```\n",
    )
    found = [problem.split(": ", 1)[1] for block in blocks for problem in unsound(block)]
    assert found[0].startswith("does not parse")
    assert found[1] == "its reason names tests/test_no_such_file.py, which does not exist"
    assert found[2].startswith("bash -n")
    assert found[3].startswith("does not parse")  # the excerpt is cut: it does not parse either
    assert found[4:] == [
        "not in examples/fastapi_portal/app.py any more: 'def no_such_function():'"
    ]


SHELL = [b for blocks in BLOCKS.values() for b in blocks if b.kind == "shell"]


@pytest.mark.parametrize("block", SHELL, ids=[b.where for b in SHELL])
def test_shell_blocks_name_real_subcommands(block: Block) -> None:
    """Even a block that does not run calls ``nirguard`` subcommands that exist."""
    parser = build_parser()
    choices = next(action.choices for action in parser._actions if isinstance(action.choices, dict))
    assert [name for name in subcommands_named(block) if name not in choices] == []


def test_subcommands_named_reads_command_positions() -> None:
    block = Block(
        Path("x.md"), 1, "sh",
        'export K="$(nirguard keygen)"\n.venv/bin/nirguard simulate --full && nirguard frob\n'
        "for x in a; do nirguard check \"$x\"; done\npip install nirguard-extra  # nirguard word\n",
    )  # fmt: skip
    assert subcommands_named(block) == ["keygen", "simulate", "frob", "check"]


def test_every_block_is_accounted_for() -> None:
    found = [problem for blocks in BLOCKS.values() for problem in problems(blocks)]
    assert found == []


def test_quickstart_and_readme_have_runnable_examples() -> None:
    runnable = [b for b in BLOCKS[DOCS / "quickstart.md"] if b.runs and b.kind == "python"]
    assert len(runnable) >= 5
    code = "".join(b.code for b in runnable)
    for name in ("nir.validate", "Pseudonymiser", "LookupGuard", "protect"):
        assert name in code, f"the quickstart no longer shows {name}"
    readme = [b for b in BLOCKS[ROOT / "README.md"] if b.runs and b.kind == "python"]
    assert any("LookupGuard" in b.code for b in readme)


def test_extract_blocks_reads_fences_and_markers() -> None:
    text = (
        "intro\n"
        "```python\nx = 1\n```\n"
        "<!-- not-run: a fragment -->\n\n"
        "```python title\ny = undefined\n```\n"
        "```sh\necho no\n```\n"
        "1. item\n\n    ```python\n    if True:\n        z = 3\n    ```\n"
        "````markdown\n```python\nnot a block\n```\n````\n"
        "<!-- install-only: the demo is long -->\n```bash\npip install .\n```\n"
        "```\nno language\n```\n"
    )
    blocks = extract_blocks(Path("x.md"), text)
    assert [(b.line, b.language, b.directive, b.runs) for b in blocks] == [
        (2, "python", None, True),
        (7, "python", "not-run", False),
        (10, "sh", None, True),
        (15, "python", None, True),
        (19, "markdown", None, False),
        (25, "bash", "install-only", True),
        (28, "", None, False),
    ]
    assert blocks[0].code == "x = 1\n"
    assert blocks[1].reason == "a fragment"
    assert blocks[3].code == "if True:\n    z = 3\n"
    assert blocks[4].code == "```python\nnot a block\n```\n"
    assert [p.split(": ", 1)[1][:23] for p in problems(blocks)] == ["fence language '(none)'"]


def test_harness_reports_page_and_line_and_carries_the_setup(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\n"
        'export NIRGUARD_KEY="$(nirguard keygen --key-id docs)"\n'
        "mkdir sub && cd sub\n"
        "```\n"
        "```python\n"
        "import os, pathlib\n"
        "from nirguard import SecretKey\n"
        'assert SecretKey.from_env("NIRGUARD_KEY").key_id == "docs"\n'
        'assert pathlib.Path.cwd().name == "sub"\n'
        "shared = 1\n"
        "```\n"
        "```python\n"
        "assert shared == 1\n"
        "\n"
        "raise RuntimeError('boom')\n"
        "```\n",
        encoding="utf-8",
    )
    run = run_page(page_blocks(page), tmp_path / "work")
    failure = run.failure()
    assert failure is not None
    assert failure.startswith("page.md:12 failed")
    assert f'File "{page}", line 15' in run.output  # the traceback points into the page
    assert "RuntimeError: boom" in run.output
    assert len(run.key_materials) == 1


@pytest.mark.parametrize(
    ("command", "ok"),
    [
        ("python3 -m venv .venv && .venv/bin/pip install -e '.[test]'", True),
        ("python -m pip install '.[redis,fastapi]'", True),
        ("pip install '.[no-such-extra]'", False),
        ("pip install no-such-package-for-nirguard", False),
        ("pip install 'nirguard[redis]'", False),  # not on the package index
        (
            "pip wheel --no-deps -w dist . && pip install 'dist/nirguard-0.1.0-py3-none-any.whl[redis]'",
            True,
        ),
        ("pip install 'dist/nirguard-0.1.0-py3-none-any.whl'", False),  # not built first
        (
            "pip wheel --no-deps -w dist . && pip install 'dist/nirguard-9.9-py3-none-any.whl'",
            False,
        ),
        ("pip uninstall -y nirguard", False),
    ],
)
def test_install_commands_are_checked_not_run(command: str, ok: bool, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"```sh\n{command}\n```\n", encoding="utf-8")
    run = run_page(page_blocks(page), tmp_path / "work")
    assert (run.failure() is None) is ok, run.output


@pytest.mark.parametrize(
    ("setup", "ok"),
    [("", False), ("pip install '.[redis]'\n", False), ("pip install '.[fastapi]'\n", True)],
)
def test_python_blocks_import_only_what_the_page_installed(
    setup: str, ok: bool, tmp_path: Path
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        f"```sh\n{setup}true\n```\n```python\nimport nirguard, pydantic, json\nimport fastapi\n```\n",
        encoding="utf-8",
    )
    run = run_page(page_blocks(page), tmp_path / "work")
    assert (run.failure() is None) is ok, run.output
    if not ok:
        python_line = 4 + setup.count("\n")
        assert str(run.failure()).startswith(f"page.md:{python_line} failed")
        assert "No module named 'fastapi'" in run.output


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


def test_install_lines_use_the_checkout_or_a_wheel() -> None:
    """nirguard is not on the package index: nothing tells a reader to install ``nirguard[x]``.

    Pages, help texts and error messages name an extra as ``'.[x]'`` in the checkout (or a
    wheel built there, docs/quickstart.md); the docs test's pip refuses the name itself.
    """
    texts = [
        ROOT / "README.md",
        *PAGES,
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "examples").rglob("*.py"),
    ]
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in texts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "nirguard[" in line
    ]
    assert offenders == []


def test_rules_page_names_every_invalid_nir_code() -> None:
    rules = (DOCS / "rules.md").read_text(encoding="utf-8")
    missing = [code for code in sorted(InvalidNIR.codes) if f"rejected: `{code}`" not in rules]
    assert missing == [], "codes the rules page never gives as a verdict"
