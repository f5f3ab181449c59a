"""Converting one CSV column, a block of whole records at a time.

Used by ``nirguard pseudonymise | tokenise | detokenise`` (``_cli_csv``), in
the main process or in ``--jobs`` worker processes.

* The quick path, for most blocks: one regex split cuts every line into
  (fields before the column, value, rest of the line); the values are
  converted in one batch and put back with a list slice. It applies when no
  field up to the column holds a quote, every line has an even number of
  quotes and every value converts; every other byte is kept as it was.
* The general path, for the other blocks: lines without a quote are split
  with ``str.split``, lines with quotes go through :mod:`csv` (quoted fields,
  embedded newlines) and are re-quoted minimally; invalid values follow
  ``--on-invalid``; blank lines are kept and not counted.
* Both paths scan each line, the column cut out, for NIRs
  (:class:`nirguard._csv_scan.Scanner`: in any spelling, across adjacent
  fields, spelt with the delimiter): the quick path once over the block,
  handing any hit to the general path, which finds the row and the fields
  and follows ``--on-invalid`` (the fields making up a NIR are blanked, or
  the row dropped, until the line holds none).

Blocks end at a newline with an even number of quote characters before it,
which is a record boundary for RFC 4180 quoting; a record still open after
``MAX_RECORD_BYTES``, or at the end of the input, is reported as unbalanced
quotes instead of being guessed at.
"""

from __future__ import annotations

import bisect
import csv
import io
import re
from collections.abc import Callable, Iterator
from typing import IO, Final, NamedTuple

from nirguard._csv_convert import converter, reason
from nirguard._csv_scan import BREAK, Scanner

BLOCK_BYTES: Final = 1 << 18  # 256 KiB: measured faster than 1 MiB (CPU caches)
MAX_BLOCK_BYTES: Final = 64 << 20
# A record spanning lines longer than this is a stray quote (csv refuses fields > 128 KiB).
MAX_RECORD_BYTES: Final = 1 << 20
STRAY_REASON: Final = "holds a NIR outside the column converted"
UNBALANCED: Final = (
    "unbalanced quotes (a quoted field never ends, or a quote inside an unquoted field)"
)
# Delimiters that can never appear in a pseudonym, a token or a NIR (fast path stays exact).
_SAFE_DELIMITERS: Final = frozenset(",;\t| ")


class Malformed(Exception):
    """The CSV cannot be read as CSV (exit status 2).

    ``line`` is the 0-based line in the block where the problem was found, if known.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class Config(NamedTuple):
    mode: str
    key_texts: tuple[str, ...]
    purpose: str
    column: int
    delimiter: str
    terminator: str
    encoding: str
    policy: str


class BlockResult(NamedTuple):
    output: bytes
    rows: int
    converted: int
    invalid: int
    lines: int
    # first invalid row when the policy is "fail":
    # (row in block, line in block, index of the column, reason)
    failure: tuple[int, int, int, str] | None
    # fields outside the column that held a NIR (blanked, or their rows dropped)
    stray: int = 0


def read_blocks(source: IO[bytes], first: bytes) -> Iterator[bytes]:
    """Blocks of whole records: each ends just after a newline with an even
    number of quotes before it (RFC 4180), except the last, which ends the input.

    Raises:
        Malformed: with the line (0-based, counted from the start of ``first``)
            where the record starts, when a record that spans lines grows past
            ``MAX_RECORD_BYTES`` or the input ends inside one. A stray quote
            is found within a megabyte of it, in constant memory, instead of
            making one block of the rest of the file.
    """
    pending = first
    line = 0  # lines in the blocks yielded so far
    while True:
        chunk = source.read(BLOCK_BYTES)
        if not chunk:
            if pending.count(b'"') % 2:
                raise _unbalanced(pending, len(pending), line)
            if pending:
                yield pending
            return
        pending += chunk
        floor = max(0, len(pending) - MAX_RECORD_BYTES)
        end = split_point(pending, floor)
        if end >= 0:
            block = pending[:end]
            pending = pending[end:]
            line += block.count(b"\n")
            yield block
        elif floor and pending.find(b"\n", floor) >= 0:
            # newlines in the last MAX_RECORD_BYTES, all inside one open quoted field
            raise _unbalanced(pending, floor, line)
        elif len(pending) > MAX_BLOCK_BYTES:
            raise Malformed(f"a line longer than {MAX_BLOCK_BYTES >> 20} MiB", line)


def _unbalanced(data: bytes, before: int, line: int) -> Malformed:
    """The error for a record still open at ``before``, with the line where it starts."""
    start = max(split_point(data, 0, before), 0)
    return Malformed(UNBALANCED, line + data.count(b"\n", 0, start))


def split_point(data: bytes, floor: int = 0, end: int | None = None) -> int:
    """Index just after the last newline (in ``data[floor:end]``) with an even
    number of quotes before it, or -1."""
    newline = data.rfind(b"\n", floor, len(data) if end is None else end)
    if newline < 0:
        return -1
    quotes = data.count(b'"', 0, newline)
    while quotes % 2:
        previous = data.rfind(b"\n", floor, newline)
        if previous < 0:
            return -1
        quotes -= data.count(b'"', previous, newline)
        newline = previous
    return newline + 1


# -- converting one block -------------------------------------------------------------------


class _Sink:
    """A write target for csv.writer that collects the formatted rows."""

    __slots__ = ("write",)

    def __init__(self, write: Callable[[str], object]) -> None:
        self.write = write


class _Parsed:
    """The records of one block, as :meth:`BlockConverter._split` cut them."""

    __slots__ = ("count", "records", "slow", "starts", "values")

    def __init__(self, count: int) -> None:
        self.count = count  # lines in the block
        self.records: list[list[str] | None] = []  # None: a blank line, copied as is
        self.starts: list[int] = []  # line (in the block) where each record starts
        self.slow: set[int] = set()  # records read by csv (written back by csv)
        self.values: list[str] = []  # the column's values, to convert

    def add(self, parts: list[str], start: int, column: int) -> None:
        self.starts.append(start)
        if not parts:
            self.records.append(None)
            return
        self.records.append(parts)
        self.values.append(parts[column] if len(parts) > column else "")


class BlockConverter:
    """Everything needed to convert a block; built once per process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.convert = converter(config.mode, config.key_texts, config.purpose)
        self.scanner = Scanner(config.delimiter)
        self.fast_split = config.delimiter in _SAFE_DELIMITERS
        self.quick: re.Pattern[str] | None = None
        if self.fast_split:
            d = re.escape(config.delimiter)
            self.quick = re.compile(
                # a line: the fields before the column (no quote), the value (no quote),
                # then nothing or a delimiter and the rest of the line, and the line end
                rf'(?m)^((?:[^{d}\n"]*{d}){{{config.column}}})([^{d}\n"\r]*)'
                rf"((?:{d}[^\n]*)?\r?)$"
            )

    def __call__(self, block: bytes) -> BlockResult:
        config = self.config
        try:
            text = block.decode(config.encoding)
        except UnicodeDecodeError as exc:
            bad_line = block.count(b"\n", 0, exc.start)
            raise Malformed(f"the input is not valid {config.encoding}", bad_line) from None
        if not text.endswith("\n"):  # only the last block may lack a final newline
            text += "\n"
        if self.quick is not None:
            quick = self._quick(text)
            if quick is not None:
                return quick
        parsed = self._split(text)
        return self._write(parsed, self.convert(parsed.values))

    def _split(self, text: str) -> _Parsed:
        """The records of a block: lines without a quote split with ``str.split``
        (the column and the rest of the line), the others read by :mod:`csv`."""
        # Lines as a file opened with newline="" yields them (split after "\n", "\r\n"
        # or a lone "\r", ends kept): exactly what the csv module reads from a file.
        lines = list(io.StringIO(text, newline=""))
        parsed = _Parsed(len(lines))
        delim = self.config.delimiter
        column = self.config.column
        pos = 0
        overrun = False

        def source() -> Iterator[str]:
            nonlocal pos, overrun
            while pos < len(lines):
                line = lines[pos]
                pos += 1
                yield line
            overrun = True

        reader: Iterator[list[str]] | None = None
        while pos < len(lines):
            start = pos
            line = lines[pos].rstrip("\r\n")  # a line holds no other "\r" or "\n"
            if self.fast_split and '"' not in line:
                pos += 1
                parts = line.split(delim, column + 1) if line else []
            else:
                if reader is None:
                    reader = csv.reader(source(), delimiter=delim)
                try:
                    parts = next(reader)
                except (csv.Error, StopIteration):
                    raise Malformed("cannot parse the record", start) from None
                if overrun:
                    raise Malformed(UNBALANCED, start)
                if parts:
                    parsed.slow.add(len(parsed.records))
            parsed.add(parts, start, column)
        return parsed

    def _write(self, parsed: _Parsed, converted: list[str | None]) -> BlockResult:
        """The block written back: the column converted, ``--on-invalid`` followed for
        invalid values and for NIRs outside the column."""
        config = self.config
        delim, column, policy = config.delimiter, config.column, config.policy
        strays = self._strays(parsed.records)
        out: list[str] = []
        append = out.append
        # lineterminator "\r\n" (cut off again): csv quotes fields holding its characters
        writer = csv.writer(
            _Sink(lambda row: append(row[:-2])), delimiter=delim, lineterminator="\r\n"
        )
        rows = invalid = done = stray = 0
        index = 0
        for number, record in enumerate(parsed.records):
            if record is None:
                append("")
                continue
            new = converted[index]
            index += 1
            rows += 1
            if new is None or len(record) <= column:
                invalid += 1
                if policy == "fail":
                    why = (
                        reason(config.mode, record[column])
                        if len(record) > column
                        else "the row has no such column"
                    )
                    failure = (rows, parsed.starts[number], column, why)
                    return BlockResult(b"", rows, done, invalid, 0, failure, stray)
                if policy == "drop":
                    continue
                if len(record) > column:
                    record[column] = ""
            else:
                record[column] = new
                done += 1
            if number in strays:
                record, fields, first = self._clean(record, number in parsed.slow)
                stray += fields
                if fields and policy == "fail":
                    failure = (rows, parsed.starts[number], first, STRAY_REASON)
                    return BlockResult(b"", rows, done, invalid, 0, failure, stray)
                if fields and policy == "drop":
                    continue
            if number in parsed.slow or record == [""]:
                writer.writerow(record)  # csv quotes what needs it (and a lone "")
            else:
                append(delim.join(record))
        output = (config.terminator.join(out) + config.terminator) if out else ""
        encoded = output.encode(config.encoding)
        return BlockResult(encoded, rows, done, invalid, parsed.count, None, stray)

    def _clean(self, record: list[str], whole: bool) -> tuple[list[str], int, int]:
        """``record`` split in full (``whole``: it is), with the fields making up NIRs
        outside the column blanked (one NIR at a time, until none is left), how many
        were blanked, and the first of them (-1: none)."""
        config = self.config
        column = config.column
        fields = record
        if not whole and len(record) > column + 1:  # the rest of a line without quotes
            fields = record[: column + 1] + record[column + 1].split(config.delimiter)
        blanked = 0
        first = -1
        while found := self.scanner.fields_holding(fields, config.delimiter, column):
            first = found[0] if first < 0 else first
            for i in found:
                fields[i] = ""
            blanked += len(found)
        return fields, blanked, first

    def _strays(self, records: list[list[str] | None]) -> set[int]:
        """Indexes of the records holding a NIR outside the column: one scan of the
        whole block, each NIR found traced back to its record."""
        column = self.config.column
        delim = self.config.delimiter
        numbers: list[int] = []
        ends: list[int] = []  # where each record's text ends in the block's
        lines: list[str] = []
        end = -1
        for number, record in enumerate(records):
            if record is not None:
                line = delim.join([*record[:column], BREAK, *record[column + 1 :]])
                lines.append(line)
                numbers.append(number)
                end += len(line) + 1
                ends.append(end)
        return {
            numbers[bisect.bisect_left(ends, start)]
            for start, _ in self.scanner.find_all(BREAK.join(lines))
        }

    def _quick(self, text: str) -> BlockResult | None:
        """The common case with one regex split and list slices, at C speed.

        It applies when every line of the block is a whole record (no carriage
        return but before a newline, an even number of quotes on every line)
        whose fields up to the column hold no quote, and whose value converts;
        the original bytes of every other field, and the line ends, are kept
        exactly. ``None`` otherwise: the general path handles the block.
        """
        assert self.quick is not None
        if text.count("\r") != text.count("\r\n"):
            return None
        body = text[:-1]
        pieces = self.quick.split(body)
        lines = body.count("\n") + 1
        if len(pieces) != 1 + 4 * lines:
            return None
        # a line with an odd number of quotes opens or closes a field across lines
        if '"' in body and any([rest.count('"') % 2 for rest in pieces[3::4] if '"' in rest]):
            return None
        # a NIR in another field: the general path finds its row and column
        if self.scanner.holds(self.scanner.unquoted([*pieces[1::4], *pieces[3::4]])):
            return None
        converted = self.convert(pieces[2::4])
        if None in converted:
            return None
        pieces[2::4] = converted
        pieces.append("\n")
        output = "".join(pieces).encode(self.config.encoding)
        return BlockResult(output, lines, lines, 0, lines, None)


# -- worker processes -----------------------------------------------------------------------

_WORKER: BlockConverter | None = None


def worker_init(config: Config) -> None:
    import signal

    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (after fork)
    _WORKER = BlockConverter(config)


def worker_convert(block: bytes) -> BlockResult | tuple[str, int | None]:
    assert _WORKER is not None
    try:
        return _WORKER(block)
    except Malformed as exc:
        return (str(exc), exc.line)


# -- orchestration --------------------------------------------------------------------------
