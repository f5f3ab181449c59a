"""``nirguard pseudonymise | tokenise | detokenise``: one CSV column, streamed.

The input is read in blocks of whole records (256 KiB); each block is
converted (:mod:`nirguard._csv_blocks`), in this process or in worker
processes with ``--jobs``, and written in input order.

Errors name the row number, never the value. Output files are written to a
temporary file in the same directory and renamed at the end, so a failure
or an interruption (Ctrl-C, SIGTERM) leaves no partial output; on stdout, a
failure says that what was already written is partial.

The guarantee: no NIR in the output outside the converted column, in any
spelling ``nir.validate`` accepts, nor split over adjacent fields or spelt with
the delimiter (``nirguard._csv_scan``). Every line (and the header) is
scanned, the column cut out; the fields making up a NIR stop the run, or are
blanked or their row dropped, as ``--on-invalid`` says. Delimiters a NIR is
made of (digits, A/B) are refused.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections import deque
from collections.abc import Iterator
from typing import IO, Any, Final, NoReturn, Protocol

from nirguard import _csv_blocks
from nirguard._csv_blocks import (
    BlockConverter,
    BlockResult,
    Config,
    Malformed,
    read_blocks,
    worker_convert,
    worker_init,
)
from nirguard._csv_io import (
    AtomicOutput,
    InvalidData,
    Progress,
    UsageError,
    check_encoding,
    failure_note,
    open_input,
    parse_header,
    sigterm_as_interrupt,
)
from nirguard._csv_scan import Scanner, unsafe_delimiter

_MODES: Final = {
    "pseudonymise": ("pseudonymised", "replace a CSV column of NIRs with keyed pseudonyms"),
    "tokenise": ("tokenised", "replace a CSV column of NIRs with reversible tokens"),
    "detokenise": ("detokenised", "replace a CSV column of tokens with the canonical NIRs"),
}
_BOM: Final = b"\xef\xbb\xbf"


def register(subparsers: Any) -> None:  # argparse._SubParsersAction (a private name)
    """Add the ``pseudonymise``, ``tokenise`` and ``detokenise`` subcommands."""
    for mode, (_done, help_text) in _MODES.items():
        parser = subparsers.add_parser(
            mode,
            help=help_text,
            description=(
                f"{help_text[0].upper()}{help_text[1:]}. Streams the CSV; every other field "
                "is left as it was, but a valid NIR found in one follows --on-invalid (no "
                "NIR is left outside the column). Output is written atomically when -o is "
                "given. A summary goes to stderr. Exit status: 0 done, 1 invalid data "
                "(--on-invalid fail), 2 usage or configuration error."
            ),
        )
        keys = parser.add_argument_group(
            "keys", "the first key given is the current one; the others are previous keys"
        )
        keys.add_argument(
            "--key-file",
            dest="key_sources",
            action="append",
            type=lambda value: ("file", value),
            metavar="FILE",
            help="a key file written by `nirguard keygen` (repeatable)",
        )
        keys.add_argument(
            "--key-env",
            dest="key_sources",
            action="append",
            type=lambda value: ("env", value),
            metavar="VAR",
            help="an environment variable holding a key in text form (repeatable)",
        )
        parser.add_argument("--purpose", required=True, help="purpose string (separates spaces)")
        parser.add_argument("--column", required=True, metavar="NAME", help="header of the column")
        parser.add_argument(
            "--delimiter", default=",", metavar="D", help="field delimiter (default ','; 'tab')"
        )
        parser.add_argument(
            "--encoding", default="utf-8", help="input and output encoding (default utf-8)"
        )
        parser.add_argument(
            "--on-invalid",
            choices=("fail", "blank", "drop"),
            default="fail",
            help="invalid value, or a NIR in another column: stop with the row number "
            "(default), empty the field, or drop the row",
        )
        parser.add_argument(
            "--jobs",
            type=int,
            default=1,
            metavar="N",
            help="worker processes (default 1; 0 = one per CPU)",
        )
        parser.add_argument("input", nargs="?", default="-", metavar="INPUT", help="default stdin")
        parser.add_argument("-o", "--output", default="-", metavar="OUTPUT", help="default stdout")
        parser.set_defaults(handler=_run, mode=mode)


# -- the command ----------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from nirguard.errors import InvalidKey

    prog = f"nirguard {args.mode}"
    output: AtomicOutput | None = None
    source: IO[bytes] | None = None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived lists, no cycles: collections only cost time
    restore_sigterm = sigterm_as_interrupt()
    try:
        try:
            keys = _load_keys(args.key_sources)
        except InvalidKey as exc:
            raise UsageError(str(exc)) from None
        if args.mode != "detokenise" and Scanner().holds(keys[0].key_id):
            # it starts every pseudonym and token written
            raise UsageError("the current key's id holds a NIR: make a key with another id")
        delimiter = _delimiter(args.delimiter)
        check_encoding(args.encoding)
        jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
        if args.jobs < 0:
            raise UsageError("--jobs must be 0 or more")
        source = open_input(args.input)
        output = AtomicOutput(args.output, secret=args.mode == "detokenise")
        summary = _Converter(
            prog=prog,
            source=source,
            sink=output,
            mode=args.mode,
            keys=keys,
            purpose=args.purpose,
            column_name=args.column,
            delimiter=delimiter,
            encoding=args.encoding,
            policy=args.on_invalid,
            jobs=jobs,
        ).run()
        output.commit()
    except UsageError as exc:
        print(f"{prog}: {exc}{failure_note(output)}", file=sys.stderr)
        return 2
    except Malformed as exc:
        print(f"{prog}: malformed CSV: {exc}{failure_note(output)}", file=sys.stderr)
        return 2
    except InvalidData as exc:
        print(f"{prog}: {exc}{failure_note(output)}", file=sys.stderr)
        return 1
    finally:
        if output is not None:
            output.discard()
        if source is not None and source is not sys.stdin.buffer:
            source.close()
        restore_sigterm()
        if gc_was_enabled:
            gc.enable()
    print(f"{prog}: {summary}", file=sys.stderr)
    return 0


def _load_keys(sources: list[tuple[str, str]] | None) -> tuple[Any, ...]:
    from nirguard.keys import KeyRing, SecretKey

    if not sources:
        raise UsageError("a key is needed: --key-file FILE or --key-env VAR")
    keys = tuple(
        SecretKey.from_file(name) if kind == "file" else SecretKey.from_env(name)
        for kind, name in sources
    )
    KeyRing(*keys)  # refuses duplicate key ids
    return keys


def _delimiter(value: str) -> str:
    if value in ("tab", "\\t"):
        return "\t"
    if len(value) != 1 or value in '"\r\n':
        raise UsageError("--delimiter must be one character other than a quote or a newline")
    why = unsafe_delimiter(value)
    if why is not None:
        raise UsageError(f"--delimiter {value!r}: {why}")
    return value


class _Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _Converter:
    def __init__(
        self,
        *,
        prog: str,
        source: IO[bytes],
        sink: _Writer,
        mode: str,
        keys: tuple[Any, ...],
        purpose: str,
        column_name: str,
        delimiter: str,
        encoding: str,
        policy: str,
        jobs: int,
    ) -> None:
        self.prog = prog
        self.source = source
        self.sink = sink
        self.mode = mode
        self.keys = keys
        self.purpose = purpose
        self.column_name = column_name
        self.delimiter = delimiter
        self.encoding = encoding
        self.policy = policy
        self.jobs = jobs
        self.rows = self.converted = self.invalid = self.lines = self.stray = 0
        self.header_lines = 0
        self._names: list[str] = []
        self._progress = Progress(source) if sys.stderr.isatty() else None

    def run(self) -> str:
        from nirguard.errors import InvalidKey

        first = self.source.read(_csv_blocks.BLOCK_BYTES)
        bom = b""
        if first.startswith(_BOM) and self.encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
            bom = _BOM
            first = first[len(_BOM) :]
        header, rest = self._read_header(first)
        self.sink.write(bom + header)
        self.header_lines = self.lines = header.count(b"\n")
        try:
            config = Config(
                mode=self.mode,
                key_texts=tuple(key.to_text() for key in self.keys),
                purpose=self.purpose,
                column=self._column,
                delimiter=self.delimiter,
                terminator=self._terminator,
                encoding=self.encoding,
                policy=self.policy,
            )
            converter = BlockConverter(config)  # checks the purpose before any worker starts
        except InvalidKey as exc:
            raise UsageError(str(exc)) from None
        blocks = self._blocks(rest)
        if self.jobs <= 1:
            for block in blocks:
                try:
                    result = converter(block)
                except Malformed as exc:
                    self._malformed(exc)
                self._take(result)
        else:
            self._run_parallel(config, blocks)
        if self._progress is not None:
            self._progress.done()
        done_word = _MODES[self.mode][0]
        action = {"fail": "", "blank": " (blanked)", "drop": " (dropped)"}[self.policy]
        # rows and lines side by side: quoted fields spanning lines (or blank lines) show
        summary = (
            f"{_count(self.rows, 'row')} ({_count(self.lines - self.header_lines, 'line')}), "
            f"{self.converted:,} {done_word}, {self.invalid:,} invalid{action}"
        )
        if self.stray:
            where = {"blank": "blanked", "drop": "rows dropped"}[self.policy]
            summary += f", {_count(self.stray, 'field')} with a NIR outside the column ({where})"
        return summary

    def _blocks(self, rest: bytes) -> Iterator[bytes]:
        """:func:`read_blocks`, with its errors' lines counted in the file."""
        try:
            yield from read_blocks(self.source, rest)
        except Malformed as exc:
            where = "" if exc.line is None else f" (line {self.header_lines + exc.line + 1})"
            raise Malformed(f"{exc}{where}") from None

    def _run_parallel(self, config: Config, blocks: Iterator[bytes]) -> None:
        """Convert blocks in ``jobs`` worker processes; output stays in input order."""
        from concurrent.futures import Future, ProcessPoolExecutor

        pending: deque[Future[BlockResult | tuple[str, int | None]]] = deque()
        executor = ProcessPoolExecutor(
            max_workers=self.jobs, initializer=worker_init, initargs=(config,)
        )
        try:
            for block in blocks:
                pending.append(executor.submit(worker_convert, block))
                while len(pending) >= 4 * self.jobs:  # bounded read-ahead
                    self._take_worker(pending.popleft().result())
            while pending:
                self._take_worker(pending.popleft().result())
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def _take_worker(self, result: BlockResult | tuple[str, int | None]) -> None:
        if not isinstance(result, BlockResult):
            self._malformed(Malformed(*result))
        self._take(result)

    def _malformed(self, exc: Malformed) -> NoReturn:
        where = "" if exc.line is None else f" (line {self.lines + exc.line + 1})"
        raise Malformed(f"{exc}{where}") from None

    def _take(self, result: BlockResult) -> None:
        if result.failure is not None:
            row, line, column, reason = result.failure
            if reason == _csv_blocks.STRAY_REASON:
                reason = f"holds a NIR (only column {self.column_name!r} is converted)"
            raise InvalidData(
                f"row {self.rows + row} (line {self.lines + line + 1}), column "
                f"{self._name(column)}: {reason}"
            )
        self.sink.write(result.output)
        self.rows += result.rows
        self.converted += result.converted
        self.invalid += result.invalid
        self.lines += result.lines
        self.stray += result.stray
        if self._progress is not None:
            self._progress.update(self.rows)

    def _name(self, column: int) -> str:
        """A column's name for a message (its number past the header's end)."""
        if column < len(self._names):
            return repr(self._names[column])
        return f"#{column + 1} (past the header's {len(self._names)})"

    def _read_header(self, first: bytes) -> tuple[bytes, bytes]:
        data = first
        scanned = quotes = 0  # quotes in data[:scanned], which ends just after a newline
        while True:
            end = data.find(b"\n", scanned)
            while end >= 0:
                quotes += data.count(b'"', scanned, end)
                scanned = end + 1
                if quotes % 2 == 0:
                    break
                end = data.find(b"\n", scanned)
            if end >= 0:
                break
            if len(data) > _csv_blocks.MAX_RECORD_BYTES:
                raise Malformed(f"the header never ends: {_csv_blocks.UNBALANCED}")
            more = self.source.read(_csv_blocks.BLOCK_BYTES)
            if not more:
                end = len(data)
                break
            data += more
        header = data[: end + 1]
        rest = data[end + 1 :]
        if not header.strip():
            raise UsageError("the input is empty: a header row naming the columns is needed")
        self._terminator = "\r\n" if header.endswith(b"\r\n") else "\n"
        self._names, self._column = parse_header(
            header, self.encoding, self.delimiter, self.column_name
        )
        if not header.endswith(b"\n"):
            header += self._terminator.encode()
        return header, rest


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"
