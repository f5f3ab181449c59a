"""The input and output of the CSV commands: files, atomic output, progress, usage errors.

Used by :mod:`nirguard._cli_csv`.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import time
from collections.abc import Callable
from typing import IO

from nirguard._csv_blocks import Malformed
from nirguard._csv_scan import Scanner

__all__ = [
    "AtomicOutput",
    "InvalidData",
    "Progress",
    "UsageError",
    "check_encoding",
    "failure_note",
    "open_input",
    "parse_header",
    "sigterm_as_interrupt",
]


class UsageError(Exception):
    """A usage or configuration problem (exit status 2)."""


class InvalidData(Exception):
    """An invalid value under ``--on-invalid fail``, or a NIR in the header (exit status 1)."""


def parse_header(
    header: bytes, encoding: str, delimiter: str, column_name: str
) -> tuple[list[str], int]:
    """The header's column names, and the index of ``column_name``.

    Raises:
        Malformed: the header cannot be read.
        UsageError: the column is missing, or named twice.
        InvalidData: the header holds a NIR (the column is named by its number).
    """
    try:
        text = header.decode(encoding)
    except UnicodeDecodeError:
        raise Malformed(f"the header is not valid {encoding}") from None
    try:
        names = next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter))
    except (csv.Error, StopIteration):
        raise Malformed("cannot parse the header") from None
    matches = [i for i, name in enumerate(names) if name == column_name]
    if not matches:
        matches = [i for i, name in enumerate(names) if name.strip() == column_name]
    if not matches:
        raise UsageError(
            f"column {column_name!r} not found in the header ({len(names)} columns; "
            "check --column and --delimiter)"
        )
    if len(matches) > 1:
        raise UsageError(f"column {column_name!r} appears more than once in the header")
    stray = Scanner(delimiter).fields_holding(names, delimiter)
    if stray:  # by number: the name is the NIR
        raise InvalidData(f"the header holds a NIR (column #{stray[0] + 1})")
    return names, matches[0]


def failure_note(output: AtomicOutput | None) -> str:
    """What became of the output, for an error message."""
    if output is None:
        return ""
    if output.path is not None:
        return "; no output file written"
    if output.written:
        return "; the output already on stdout is partial: discard it"
    return "; nothing written to stdout"


def sigterm_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM raise KeyboardInterrupt (so the temporary output is removed);
    returns the function that restores the previous handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def check_encoding(encoding: str) -> None:
    import codecs

    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise UsageError(f"unknown encoding {encoding!r}") from None
    if "\n".encode(info.name) != b"\n" or '"'.encode(info.name) != b'"':
        raise UsageError(f"encoding {encoding!r} is not ASCII-compatible")


def open_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


class AtomicOutput:
    """A temporary file next to the output, renamed over it on :meth:`commit`."""

    def __init__(self, path: str, *, secret: bool) -> None:
        import tempfile

        self._path: str | None = None if path == "-" else path
        self._temp: str | None = None
        self.written = 0  # bytes written
        if self._path is None:
            self._handle: IO[bytes] = sys.stdout.buffer
            return
        if os.path.isdir(self._path):
            raise UsageError(f"{self._path} is a directory")
        directory = os.path.dirname(os.path.abspath(self._path))
        try:
            fd, self._temp = tempfile.mkstemp(
                dir=directory, prefix=f".{os.path.basename(self._path)}.", suffix=".tmp"
            )
        except OSError as exc:
            raise UsageError(f"cannot write in {directory}: {exc.strerror}") from None
        self._handle = os.fdopen(fd, "wb")
        # Detokenised output holds NIRs: keep it private. Else the usual umask mode,
        # or the mode of the file it replaces.
        if secret:
            self._mode = 0o600
        else:
            try:
                self._mode = os.stat(self._path).st_mode & 0o7777
            except OSError:
                umask = os.umask(0)
                os.umask(umask)
                self._mode = 0o666 & ~umask

    @property
    def path(self) -> str | None:
        """The output file, ``None`` for stdout."""
        return self._path

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self.written += len(data)

    def commit(self) -> None:
        if self._path is None or self._temp is None:
            self._handle.flush()
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.chmod(self._temp, self._mode)
        os.replace(self._temp, self._path)
        self._temp = None

    def discard(self) -> None:
        if self._temp is not None:
            self._handle.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
            self._temp = None


class Progress:
    """A one-line progress indicator on stderr (only used when it is a terminal)."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._last = 0.0
        try:
            self._size: int | None = os.fstat(source.fileno()).st_size or None
        except (OSError, ValueError):
            self._size = None

    def update(self, rows: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        text = f"{rows:,} rows"
        if self._size:
            try:
                position = os.lseek(self._source.fileno(), 0, os.SEEK_CUR)
                fraction = min(position / self._size, 1.0)
                bar = "#" * int(fraction * 30)
                text = f"[{bar:<30}] {fraction:4.0%}  {text}"
            except (OSError, ValueError):
                pass
        sys.stderr.write(f"\r{text}\x1b[K")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
