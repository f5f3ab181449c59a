"""The CLI driven in process for the CSV tests (``nirguard pseudonymise``): the command
line, a key file, and the converter alone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from nirguard import SecretKey
from nirguard import _cli_csv as cli_csv
from nirguard import _csv_blocks as csv_blocks
from nirguard.cli import main

__all__ = ["blocks_of", "key_file_at", "pseudonymising", "run"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``nirguard *argv``: its exit code, stdout and stderr."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def key_file_at(path: Path, key: SecretKey) -> Path:
    """``key`` written to ``path`` as the CLI reads it, readable by its owner alone (a
    group-readable key file gets an InsecureKeyFileWarning)."""
    path.write_text(key.to_text() + "\n")
    path.chmod(0o600)
    return path


def pseudonymising(
    key: SecretKey,
    source: IO[bytes],
    sink: IO[bytes],
    *,
    purpose: str = "prop",
    delimiter: str = ",",
    policy: str = "fail",
    jobs: int = 1,
) -> cli_csv._Converter:
    """The converter that pseudonymises column ``nir`` of ``source`` (UTF-8) into ``sink``
    with ``key``, as the CLI builds it."""
    return cli_csv._Converter(
        prog="test", source=source, sink=sink, mode="pseudonymise", keys=(key,),
        purpose=purpose, column_name="nir", delimiter=delimiter, encoding="utf-8",
        policy=policy, jobs=jobs,
    )  # fmt: skip


@contextmanager
def blocks_of(size: int) -> Iterator[None]:
    """The CSV reader reads blocks of ``size`` bytes (a small one splits cells, quotes
    and line ends across blocks)."""
    old = csv_blocks.BLOCK_BYTES
    csv_blocks.BLOCK_BYTES = size  # type: ignore[misc]
    try:
        yield
    finally:
        csv_blocks.BLOCK_BYTES = old  # type: ignore[misc]
