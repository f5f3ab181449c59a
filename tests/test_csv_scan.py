"""The CSV commands' guarantee: no valid NIR in the output outside the converted column.

Also: rows against physical lines in the summary, a stray quote found fast, and what an
error says about output already written to stdout.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nirguard import Pseudonymiser, SecretKey, Tokeniser, nir
from nirguard import _csv_blocks as csv_blocks
from nirguard._csv_io import InvalidData
from nirguard._csv_scan import Scanner
from nirguard.testing import NIRGenerator
from tests.conftest import assert_no_nir, find_nirs
from tests.csv_helpers import blocks_of, key_file_at, pseudonymising, run

KEY = SecretKey(bytes(range(32)), "scan-key")
TARGET = "297076749841517"  # the converted column's NIR
STRAY = "172026578046135"  # a NIR in another column
CORSICA = "282042A12345617"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return key_file_at(tmp_path / "scan.key", KEY)


def command(
    capsys: pytest.CaptureFixture[str],
    key_file: Path,
    source: Path,
    *options: str,
    mode: str = "pseudonymise",
) -> tuple[int, str, str]:
    return run(
        capsys, mode, "--key-file", str(key_file), "--purpose", "p", "--column", "nir",
        *options, str(source),
    )  # fmt: skip


def spellings(canonical: str) -> list[str]:
    spaced = nir.format(canonical)
    return [
        canonical,
        spaced,
        spaced.replace(" ", "."),
        spaced.replace(" ", "-"),
        spaced.replace(" ", "\u00a0"),
        spaced.replace(" ", "\u202f"),
        spaced.replace(" ", "  "),
        canonical.lower(),
    ]


SPELLINGS = [*spellings(STRAY), *spellings(CORSICA), nir.format("282049741112380")]


# -- the test's own reading of the output (independent of nirguard._csv_scan) -----------------

_NIR_CHARS = frozenset("0123456789ABab")
_JOINED = "\uffff"  # between fields joined by the test: a boundary, not a character


def _plain(text: str) -> str:
    """``text`` as a reader reads it: digits of any script as ASCII digits, every space,
    dash, control or invisible character as a space."""
    out = []
    for char in text:
        digit = unicodedata.decimal(char, None)
        folded = unicodedata.normalize("NFKC", char)
        if digit is not None:
            out.append(str(digit))
        elif folded in _NIR_CHARS:
            out.append(folded)
        elif (
            char in ".-"
            or folded.isspace()
            or unicodedata.category(char) in ("Zs", "Zl", "Zp", "Cc", "Cf", "Pd")
        ):
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def leaks(text: str, *fields: str, bodies: tuple[str, ...] = ()) -> list[str]:
    """The NIRs a reader finds in ``text``, or in ``fields`` side by side.

    In one text: a string ``nir.validate`` accepts, bounded by non-digits, or strictly
    valid anywhere. Across fields: a strictly valid NIR starting and ending on a field
    or digit-group boundary. ``bodies``: 13-character bodies bounded by non-digits.
    """
    plain = _JOINED.join(_plain(field) for field in fields) if fields else _plain(text)
    found = []
    for start, char in enumerate(plain):
        if char not in "0123456789":
            continue
        count, crossed = 0, False
        for index in range(start, len(plain)):
            here = plain[index]
            crossed = crossed or here == _JOINED
            if here in (" ", _JOINED):
                continue
            if here not in _NIR_CHARS:
                break
            count += 1
            if count == 15:
                window = plain[start : index + 1].replace(_JOINED, "")
                aligned = (start == 0 or plain[start - 1] not in "0123456789") and (
                    index + 1 == len(plain) or plain[index + 1] not in "0123456789"
                )
                if crossed:
                    bad = aligned and nir.is_valid(window)
                else:
                    bad = nir.is_valid(window) or (aligned and nir.is_valid(window, strict=False))
                if bad:
                    found.append(window)
                break
    for body in bodies:
        spelt = " *".join(re.escape(char) for char in body)
        if re.search(rf"(?<![0-9]){spelt}(?![0-9])", plain, re.IGNORECASE):
            found.append(body)
    return found


# -- the scanner ------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("around", ["{}", "call {} today", "NIR{}", "x{}y", "({})", "{}, ref 12"])
def test_scanner_finds_every_accepted_spelling(spelling: str, around: str) -> None:
    assert nir.is_valid(spelling)
    assert Scanner(",").holds(around.format(spelling))
    assert Scanner().holds(around.format(spelling))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no digits at all",
        "172026578046134",  # wrong key
        "17202657804613",  # 14 digits
        "12 35 18 Dubois 2024-03-13 650.93",
        "01 23 45 67 89 01 23 45 67 89",  # phone numbers: no 15-character window
        "FR76 3000 6000 0112 3456 7890 189",  # an IBAN without a well-keyed window
    ],
)
def test_scanner_leaves_other_text(text: str) -> None:
    assert not Scanner(",").holds(text)


def test_a_body_with_a_wrong_key_is_still_found() -> None:
    # the 13 characters name the patient; only the key was mistyped
    assert Scanner(",").holds("1 72 02 65 780 461 34")
    assert not Scanner(",").holds("172026578046134")  # one group of 15: no body inside


def test_a_nir_inside_a_longer_number_is_found() -> None:
    # issue 18: a NIR followed (or preceded) by more digits is still in the output. Inside
    # a longer run, a window counts when it is strictly valid (structure and key).
    scanner = Scanner(",")
    for run_ in (STRAY + "12", "9" + STRAY, "00000" + STRAY, STRAY + "00000"):
        assert scanner.holds(run_)
        assert scanner.holds(f"ref {run_} ok")
    assert scanner.holds(f"0000 {STRAY}")
    assert scanner.holds(f"{nir.format(STRAY)} 12")
    # a longer number without a strictly valid window is not a NIR
    plain = "12345678901234567890"
    assert not any(nir.is_valid(plain[i : i + 15]) for i in range(6))
    assert not scanner.holds(plain)


# The spellings of issue 18 that `nir.validate` refuses but a reader reads as the number.
LOOKALIKES = {
    "fullwidth": "".join(chr(0xFF10 + int(c)) for c in STRAY),
    "arabic-indic": "".join(chr(0x0660 + int(c)) for c in STRAY),
    "thin space": nir.format(STRAY).replace(" ", "\u2009"),
    "ideographic space": nir.format(STRAY).replace(" ", "\u3000"),
    "en dash": nir.format(STRAY).replace(" ", "\u2013"),
    "NUL inside": STRAY[:7] + "\x00" + STRAY[7:],
    "zero-width space": STRAY[:5] + "\u200b" + STRAY[5:],
    "line break": nir.format(STRAY).replace(" 006", "\n006"),
    "two more digits": STRAY + "12",
    "body without its key": STRAY[:13],
    "spaced body": nir.format(STRAY)[:-3],
}


@pytest.mark.parametrize("name", sorted(LOOKALIKES))
def test_scanner_finds_what_a_reader_reads_as_a_nir(name: str) -> None:
    assert Scanner(",").holds(f"x {LOOKALIKES[name]} y")


def test_scanner_finds_a_nir_across_adjacent_fields() -> None:
    scanner = Scanner(",")
    assert scanner.fields_holding(["a", STRAY[:8], STRAY[8:], "b"], ",") == [1, 2]
    assert scanner.fields_holding(["a", STRAY[:8], "", STRAY[8:]], ",") == [1, 3]
    assert scanner.fields_holding([STRAY[:8], "x", STRAY[8:]], ",", skip=1) == []
    assert scanner.fields_holding(["x", STRAY], ",", skip=1) == []
    # with a separator as the delimiter, the fields spell the NIR themselves
    assert Scanner(" ").fields_holding(["x", *nir.format(STRAY).split()], " ") == list(range(1, 8))
    # but numbers side by side are not taken for a body: dates, amounts, ids
    assert not scanner.holds("2024-05-12,123.45,12,3400930000000,1")


@pytest.mark.parametrize("delimiter", ["0", "7", "A", "b", "\uff17", "\u0663"])
def test_delimiters_a_nir_is_made_of_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, delimiter: str
) -> None:
    source = write(tmp_path / "in.csv", f"nir\n{TARGET}\n")
    code, out, err = command(capsys, key_file, source, "--delimiter", delimiter)
    assert code == 2 and out == ""
    assert "cannot be the delimiter" in err


# -- the commands ------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_nir_in_another_column_stops_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, spelling: str, jobs: str
) -> None:
    source = write(
        tmp_path / "in.csv", f'id,nir,note\n1,{TARGET},ok\n2,{TARGET},"call {spelling}"\n'
    )
    target = tmp_path / "out.csv"
    code, out, err = command(capsys, key_file, source, "--jobs", jobs, "-o", str(target))
    assert code == 1
    assert "row 2 (line 3), column 'note': holds a NIR" in err
    assert "no output file written" in err
    assert_no_nir(err, TARGET, STRAY, CORSICA)
    assert out == ""
    assert not target.exists()


def test_the_issue_example(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = write(tmp_path / "in.csv", f"id,nir,note\n1,{TARGET},call {STRAY}\n")
    code, out, err = command(capsys, key_file, source)
    assert code == 1
    assert STRAY not in out
    assert "row 1 (line 2), column 'note'" in err
    assert_no_nir(err, TARGET, STRAY)


@pytest.mark.parametrize("column", ["first", "last"])
@pytest.mark.parametrize("mode", ["tokenise", "detokenise"])
def test_every_mode_scans_every_other_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, mode: str, column: str
) -> None:
    value = Tokeniser(KEY, purpose="p").tokenise(TARGET) if mode == "detokenise" else TARGET
    row = [value, f"x{STRAY}"] if column == "first" else [STRAY, value]
    header = ["nir", "note"] if column == "first" else ["note", "nir"]
    source = write(tmp_path / "in.csv", f"{','.join(header)}\n{','.join(row)}\n")
    code, _, err = command(capsys, key_file, source, mode=mode)
    assert code == 1
    assert "row 1 (line 2), column 'note': holds a NIR" in err
    assert_no_nir(err, TARGET, STRAY)


def test_detokenised_column_is_not_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    token = Tokeniser(KEY, purpose="p").tokenise(TARGET)
    source = write(tmp_path / "in.csv", f"nir,note\n{token},fine\n")
    code, out, err = command(capsys, key_file, source, mode="detokenise")
    assert code == 0, err
    assert out == f"nir,note\n{TARGET},fine\n"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_blank_and_drop_handle_stray_nirs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, jobs: str
) -> None:
    rows = [
        ["id", "nir", "note", "other"],
        ["1", TARGET, "fine", "ok"],
        ["2", TARGET, f"call {nir.format(STRAY)}", CORSICA.lower()],
        ["3", TARGET, "a,b", f"x{STRAY}"],  # a quoted field before the one holding a NIR
        ["4", "185057800608490", STRAY, ""],  # invalid value and a stray NIR
    ]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    source = write(tmp_path / "in.csv", buffer.getvalue())
    pseudonym = Pseudonymiser(KEY, purpose="p").pseudonymise(TARGET)
    for policy, expected, summary in [
        (
            "blank",
            [
                rows[0],
                ["1", pseudonym, "fine", "ok"],
                ["2", pseudonym, "", ""],
                ["3", pseudonym, "a,b", ""],
                ["4", "", "", ""],
            ],
            "4 rows (4 lines), 3 pseudonymised, 1 invalid (blanked), "
            "4 fields with a NIR outside the column (blanked)",
        ),
        (
            "drop",
            [rows[0], ["1", pseudonym, "fine", "ok"]],
            "4 rows (4 lines), 3 pseudonymised, 1 invalid (dropped), "
            "3 fields with a NIR outside the column (rows dropped)",
        ),
    ]:
        target = tmp_path / f"{policy}.csv"
        code, _, err = command(
            capsys, key_file, source, "--on-invalid", policy, "--jobs", jobs, "-o", str(target)
        )
        assert code == 0, err
        assert summary in err
        output = target.read_text()
        assert list(csv.reader(io.StringIO(output))) == expected
        assert find_nirs(output) == []
        assert_no_nir(err, TARGET, STRAY, CORSICA)


# Each leak the attack review of issue 18 found: (delimiter, input). Before the fix, every
# one came out in clear with exit status 0 and "0 invalid", whatever --on-invalid said.
LEAKS = {
    "space delimiter": (" ", f"nir note\n{TARGET} {nir.format(STRAY)}\n"),
    "dot delimiter": (".", f"nir.note\n{TARGET}.{nir.format(STRAY).replace(' ', '.')}\n"),
    "dash delimiter": ("-", f"nir-note\n{TARGET}-{nir.format(STRAY).replace(' ', '-')}\n"),
    "body without its key": (",", f"nir,note\n{TARGET},{STRAY[:13]}\n"),
    "split over two columns": (",", f"nir,a,b\n{TARGET},{STRAY[:8]},{STRAY[8:]}\n"),
    "split around quotes": (",", f'nir,a,b\n{TARGET},"{STRAY[:8]}","{STRAY[8:]}"\n'),
    "fullwidth digits": (",", f"nir,note\n{TARGET},{LOOKALIKES['fullwidth']}\n"),
    "thin spaces": (",", f"nir,note\n{TARGET},{LOOKALIKES['thin space']}\n"),
    "NUL inside": (",", f"nir,note\n{TARGET},{LOOKALIKES['NUL inside']}\n"),
    "over two lines": (",", f'nir,note\n{TARGET},"{LOOKALIKES["line break"]}"\n'),
    "two more digits": (",", f"nir,note\n{TARGET},{STRAY}12\n"),
    "tab, split": ("\t", f"nir\ta\tb\n{TARGET}\t{STRAY[:5]}\t{STRAY[5:]}\n"),
}


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("policy", ["fail", "blank", "drop"])
@pytest.mark.parametrize("name", sorted(LEAKS))
def test_the_leaks_of_issue_18_are_closed(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key_file: Path,
    name: str,
    policy: str,
    jobs: str,
) -> None:
    delimiter, text = LEAKS[name]
    source = write(tmp_path / "in.csv", text)
    target = tmp_path / "out.csv"
    code, _, err = command(
        capsys, key_file, source, "--delimiter", delimiter, "--on-invalid", policy,
        "--jobs", jobs, "-o", str(target),
    )  # fmt: skip
    assert_no_nir(err, TARGET, STRAY)
    if policy == "fail":
        assert code == 1, err
        assert "row 1 (line 2), column " in err and "holds a NIR" in err
        assert not target.exists()
        return
    assert code == 0, err
    assert "with a NIR outside the column" in err
    output = target.read_text()
    assert leaks(output) == []
    rows = list(csv.reader(io.StringIO(output), delimiter=delimiter))
    assert rows[0] == text.split("\n")[0].split(delimiter)
    if policy == "drop":
        assert rows[1:] == []
    else:
        pseudonym = Pseudonymiser(KEY, purpose="p").pseudonymise(TARGET)
        assert rows[1][0] == pseudonym and all(not field for field in rows[1][1:])


def test_long_numbers_without_a_nir_are_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    reference = "12345678901234567890"  # 20 digits, no strictly valid 15-digit window
    dates = "2024-05-12,123.45,3400930000000"  # a date, an amount, a CIP13 drug code
    source = write(tmp_path / "in.csv", f"nir,ref,date,amount,cip\n{TARGET},{reference},{dates}\n")
    code, out, err = command(capsys, key_file, source)
    assert code == 0, err
    assert out.endswith(f",{reference},{dates}\n")


def test_a_nir_in_the_header_is_refused_by_number(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = write(tmp_path / "in.csv", f"nir,{STRAY}\n{TARGET},x\n")
    code, out, err = command(capsys, key_file, source, "--on-invalid", "blank")
    assert code == 1
    assert "the header holds a NIR (column #2)" in err
    assert "nothing written to stdout" in err
    assert out == ""
    assert_no_nir(err, STRAY)


def test_a_key_id_holding_a_nir_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "nir.key"
    key_file.write_text(SecretKey(bytes(range(32)), f"k{STRAY}").to_text())
    key_file.chmod(0o600)
    source = write(tmp_path / "in.csv", f"nir\n{TARGET}\n")
    code, out, err = command(capsys, key_file, source)
    assert code == 2
    assert "key's id holds a NIR" in err
    assert out == ""
    assert_no_nir(err, STRAY)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_quotes_that_swallow_lines_cannot_leak(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, jobs: str
) -> None:
    # An even number of quotes overall, so the blocks look whole; but the csv module
    # reads lines 2-3 as one record whose note holds the second line's NIR.
    text = f'nir,note\n{TARGET},"oops\n{STRAY},O"Neil\n{TARGET},fine\n'
    source = write(tmp_path / "in.csv", text)
    code, out, err = command(capsys, key_file, source, "--jobs", jobs)
    assert code == 1
    assert "row 1 (line 2), column 'note': holds a NIR" in err
    assert STRAY not in out
    code, out, err = command(capsys, key_file, source, "--jobs", jobs, "--on-invalid", "blank")
    assert code == 0
    assert "2 rows (3 lines)" in err  # the mismatch shows
    assert find_nirs(out) == [] and STRAY not in out


# -- property: a NIR put anywhere outside the column never comes out ---------------------------

# no lone "\r": Python 3.11's writer leaves it unquoted, and the reader then splits there
_TEXT = st.text(alphabet=st.sampled_from(list('ab ,;"\né€x0123-.\u00a0')), max_size=6)


@st.composite
def _stray(draw: st.DrawFn) -> str:
    canonical = NIRGenerator(seed=draw(st.integers(0, 10_000))).generate()
    spelling = draw(st.sampled_from(spellings(canonical)))
    # what touches it must not be a digit (a longer digit run is not a NIR)
    before = draw(st.text(alphabet=st.sampled_from(list('ab ,;"\n:')), max_size=3))
    after = draw(st.text(alphabet=st.sampled_from(list('ab ,;"\n:')), max_size=3))
    return before + spelling + after


@given(
    rows=st.lists(st.tuples(_TEXT, _TEXT, _TEXT), min_size=1, max_size=20),
    where=st.tuples(st.integers(0, 19), st.integers(0, 1)),
    stray=_stray(),
    delimiter=st.sampled_from([",", ";", "\t", " "]),
    terminator=st.sampled_from(["\n", "\r\n"]),
    block=st.sampled_from([8, 64, 1 << 18]),
    policy=st.sampled_from(["fail", "blank", "drop"]),
)
@settings(max_examples=200, deadline=None)
def test_a_nir_outside_the_column_never_comes_out(
    rows: list[tuple[str, str, str]],
    where: tuple[int, int],
    stray: str,
    delimiter: str,
    terminator: str,
    block: int,
    policy: str,
) -> None:
    table = [["nir", "a", "b"]] + [[TARGET, a, b] for _, a, b in rows]
    row, field = where[0] % len(rows) + 1, where[1] + 1
    table[row][field] = stray
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator=terminator).writerows(table)
    text = buffer.getvalue()
    source, sink = io.BytesIO(text.encode()), io.BytesIO()
    with blocks_of(block):
        converter = pseudonymising(KEY, source, sink, delimiter=delimiter, policy=policy)
        error = summary = None
        try:
            summary = converter.run()
        except InvalidData as exc:
            error = str(exc)
    if error is not None:
        assert policy == "fail"
        assert f"row {row} " in error and "holds a NIR" in error
        assert find_nirs(error) == []
    output = sink.getvalue().decode()
    assert find_nirs(output) == []
    canonical = nir.validate(stray.strip('ab ,;"\n:'))
    assert canonical not in output and canonical.lower() not in output
    assert stray.strip('ab ,;"\n:') not in output
    if summary is not None:
        assert "with a NIR outside the column" in summary


# -- property: any delimiter, any quoting, the spellings of issue 18 -------------------------

DELIMITERS = [*",;\t| .-:/#'x", "\u00a0", "\u2009", "\x1e"]
_JUNK = st.text(alphabet=st.sampled_from(list('ab ,;"\n\té€x0123-.\u00a0#|:/')), max_size=6)
_EDGE = st.text(alphabet=st.sampled_from(list('ab ,;"\n:x#|')), max_size=2)  # no digit


def _spelt(canonical: str, how: str) -> str:
    spaced = nir.format(canonical)
    return {
        "compact": canonical,
        "spaced": spaced,
        "dots": spaced.replace(" ", "."),
        "dashes": spaced.replace(" ", "-"),
        "no-break": spaced.replace(" ", "\u00a0"),
        "lower": canonical.lower(),
        "fullwidth": "".join(chr(0xFF10 + int(c)) if c.isdigit() else c for c in canonical),
        "thin": spaced.replace(" ", "\u2009"),
        "nul": canonical[:6] + "\x00" + canonical[6:],
        "newline": spaced.replace(" ", "\n", 2),
        "plus two": canonical + "12",
        "body": canonical[:13],
    }[how]


SPELT = ["compact", "spaced", "dots", "dashes", "no-break", "lower", "fullwidth", "thin", "nul"]
SPELT += ["newline", "plus two", "body", "split"]


@st.composite
def _table(draw: st.DrawFn) -> tuple[list[list[str]], int, tuple[str, ...], bool]:
    """A table (header first), the converted column, the bodies planted, whether the
    header holds one."""
    width = draw(st.integers(3, 5))
    column = draw(st.integers(0, width - 1))
    header = [f"c{i}" for i in range(width)]
    header[column] = "nir"
    rows = [
        [TARGET if i == column else draw(_JUNK) for i in range(width)]
        for _ in range(draw(st.integers(1, 12)))
    ]
    table = [header, *rows]
    bodies: list[str] = []
    header_holds = False
    for _ in range(draw(st.integers(1, 3))):
        generator = NIRGenerator(seed=draw(st.integers(0, 10_000)))
        canonical = generator.generate(sex=draw(st.sampled_from([1, 2])))
        how = draw(st.sampled_from(SPELT))
        row = draw(st.integers(0, len(rows)))  # 0: the header
        others = [i for i in range(width) if i != column]
        field = draw(st.sampled_from(others))
        edge = draw(_EDGE), draw(_EDGE)
        pairs = [i for i in others if i + 1 in others]
        if how == "split" and not pairs:
            how = "compact"
        if how == "split":  # over two adjacent fields (the column between is no neighbour)
            field = draw(st.sampled_from(pairs))
            cut = draw(st.integers(1, 14))
            table[row][field] = edge[0] + canonical[:cut]
            table[row][field + 1] = canonical[cut:] + edge[1]
        else:
            table[row][field] = edge[0] + _spelt(canonical, how) + edge[1]
        if how == "body":
            bodies.append(canonical[:13])
        header_holds = header_holds or row == 0
    return table, column, tuple(bodies), header_holds


@given(
    drawn=_table(),
    delimiter=st.sampled_from(DELIMITERS),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    terminator=st.sampled_from(["\n", "\r\n"]),
    block=st.sampled_from([8, 64, 1 << 18]),
    policy=st.sampled_from(["fail", "blank", "drop"]),
)
@settings(max_examples=300, deadline=None)
def test_no_nir_comes_out_whatever_the_delimiter(
    drawn: tuple[list[list[str]], int, tuple[str, ...], bool],
    delimiter: str,
    quoting: int,
    terminator: str,
    block: int,
    policy: str,
) -> None:
    table, column, bodies, header_holds = drawn
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator=terminator, quoting=quoting).writerows(
        table
    )
    source, sink = io.BytesIO(buffer.getvalue().encode()), io.BytesIO()
    with blocks_of(block):
        converter = pseudonymising(KEY, source, sink, delimiter=delimiter, policy=policy)
        error = summary = None
        try:
            summary = converter.run()
        except InvalidData as exc:
            error = str(exc)
    if error is not None:
        assert policy == "fail" or header_holds, error
        assert leaks(error) == []
    else:
        assert summary is not None and "with a NIR outside the column" in summary
    output = sink.getvalue().decode()
    pseudonyms = re.compile(r"scan-key:[0-9a-f]{32}")
    for line in pseudonyms.sub("#", output).splitlines():  # the column breaks a line
        assert leaks(line, bodies=bodies) == [], line
    for row in csv.reader(io.StringIO(output, newline=""), delimiter=delimiter):
        if row and pseudonyms.fullmatch(row[column if len(row) > column else 0]):
            row[column] = "#"  # the converted value: not the input's text, no neighbour
        for field in row:
            assert leaks(field, bodies=bodies) == [], field
        assert leaks("", *row) == [], row


# -- rows and lines, stray quotes, partial output on stdout ------------------------------------


def test_summary_shows_rows_and_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = write(tmp_path / "in.csv", f'nir,note\n{TARGET},"a\nb"\n\n{TARGET},x\n')
    code, _, err = command(capsys, key_file, source)
    assert code == 0, err
    assert "2 rows (4 lines), 2 pseudonymised, 0 invalid" in err


def _big_csv(rows: int, stray_at: int | None) -> bytes:
    lines = [b"id,nir,name,date,amount\n"]
    for index, value in enumerate(NIRGenerator(seed=3).many(rows)):
        note = b'"Stray quote' if index == stray_at else b'"Petit, Jean"'
        lines.append(b"%d,%s,%s,2024-03-13,650.93\n" % (index, value.encode(), note))
    return b"".join(lines)


class _CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.consumed = 0

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self.consumed += len(chunk)
        return chunk


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_stray_quote_fails_within_a_megabyte(jobs: int) -> None:
    data = _big_csv(200_000, stray_at=2)  # about 11 MB
    source = _CountingReader(data)
    converter = pseudonymising(KEY, source, io.BytesIO(), purpose="p", jobs=jobs)
    with pytest.raises(csv_blocks.Malformed, match=r"unbalanced quotes .*\(line 4\)$"):
        converter.run()
    assert len(data) > 8 * csv_blocks.MAX_RECORD_BYTES
    assert source.consumed <= csv_blocks.MAX_RECORD_BYTES + 2 * csv_blocks.BLOCK_BYTES


def test_a_stray_quote_near_the_end_is_found_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(_big_csv(3000, stray_at=2990))
    code, _, err = command(capsys, key_file, source, "-o", str(tmp_path / "out.csv"))
    assert code == 2
    assert "unbalanced quotes" in err and "(line 2992)" in err


def test_a_stray_quote_in_the_header_fails_fast() -> None:
    data = b'id,"nir,name\n' + _big_csv(100_000, stray_at=None)
    source = _CountingReader(data)
    converter = pseudonymising(KEY, source, io.BytesIO(), purpose="p")
    with pytest.raises(csv_blocks.Malformed, match="the header never ends"):
        converter.run()
    assert source.consumed <= csv_blocks.MAX_RECORD_BYTES + 2 * csv_blocks.BLOCK_BYTES


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_failure_on_stdout_says_the_output_is_partial(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, jobs: str
) -> None:
    rows = "".join(f"{TARGET},fine\n" for _ in range(20_000))  # several blocks
    source = write(tmp_path / "in.csv", f"nir,note\n{rows}{TARGET},{STRAY}\n")
    code, out, err = command(capsys, key_file, source, "--jobs", jobs)
    assert code == 1
    assert "row 20001 (line 20002), column 'note'" in err
    assert "the output already on stdout is partial: discard it" in err
    assert "no output" not in err
    assert out.startswith("nir,note\n")
    assert STRAY not in out
    assert_no_nir(err, TARGET, STRAY)
    target = tmp_path / "out.csv"
    code, out, err = command(capsys, key_file, source, "--jobs", jobs, "-o", str(target))
    assert code == 1
    assert "no output file written" in err and "partial" not in err
    assert out == "" and not target.exists()
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
