"""``nirguard keygen`` and the CSV commands: round trips, policies, atomic output."""

from __future__ import annotations

import csv
import io
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nirguard import KeyRing, Pseudonymiser, SecretKey, Tokeniser, nir
from nirguard import _csv_blocks as csv_blocks
from nirguard.cli import main
from nirguard.testing import NIRGenerator
from tests.conftest import assert_no_nir
from tests.csv_helpers import blocks_of, key_file_at, pseudonymising, run

KEY = SecretKey(bytes(range(32)), "cli-key")
OLD_KEY = SecretKey(bytes(range(1, 33)), "old-key")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return key_file_at(tmp_path / "cli.key", KEY)


def read_rows(path: Path, delimiter: str = ",") -> list[list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


def write_csv(path: Path, rows: list[list[str]], **kwargs: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, **kwargs).writerows(rows)  # type: ignore[arg-type]


def leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


# -- keygen -----------------------------------------------------------------------------------


def test_keygen_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "keygen", "--key-id", "team-2026")
    assert code == 0
    key = SecretKey.from_text(out)
    assert key.key_id == "team-2026"
    code, out2, _ = run(capsys, "keygen")
    assert code == 0
    assert SecretKey.from_text(out2) != key


def test_keygen_to_file_is_private_and_never_overwritten(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "new.key"
    code, out, err = run(capsys, "keygen", "--key-id", "k1", "-o", str(path))
    assert code == 0
    assert out == ""
    assert "k1" in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = SecretKey.from_file(path)
    assert key.key_id == "k1"
    assert key.to_text().split(":")[-1] not in err
    before = path.read_bytes()
    code, out, err = run(capsys, "keygen", "-o", str(path))
    assert code == 2
    assert "already exists" in err
    assert path.read_bytes() == before


def test_keygen_refuses_a_symlink_and_bad_ids(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "target"
    link = tmp_path / "link.key"
    link.symlink_to(target)
    code, _, err = run(capsys, "keygen", "-o", str(link))
    assert code == 2
    assert not target.exists()
    code, _, err = run(capsys, "keygen", "--key-id", "bad id")
    assert code == 2
    assert "key id" in err
    code, _, err = run(capsys, "keygen", "-o", str(tmp_path / "missing-dir" / "k.key"))
    assert code == 2


# -- pseudonymise -----------------------------------------------------------------------------

NIRS = ["185057800608491", "1 85 05 78 006 084 91", "2 82 04 2a 123 456 17", "282049741112380"]


def sample_rows() -> list[list[str]]:
    return [
        ["id", "nir", "name", "note"],
        ["1", NIRS[0], "Martin", "plain"],
        ["2", NIRS[1], "Petit, Jean", 'says "hello"'],
        ["3", NIRS[2], "Multi\nline", "crlf\r\ninside"],
        ["4", NIRS[3], "", "trailing "],
    ]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_pseudonymise_round_trip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, jobs: str
) -> None:
    source = tmp_path / "in.csv"
    target = tmp_path / "out.csv"
    rows = sample_rows()
    write_csv(source, rows)
    code, out, err = run(
        capsys,
        "pseudonymise",
        "--key-file",
        str(key_file),
        "--purpose",
        "export-a",
        "--column",
        "nir",
        "--jobs",
        jobs,
        str(source),
        "-o",
        str(target),
    )
    assert code == 0, err
    assert out == ""
    assert "4 rows (6 lines), 4 pseudonymised, 0 invalid" in err
    assert_no_nir(err, *NIRS)
    result = read_rows(target)
    pseudonymiser = Pseudonymiser(KEY, purpose="export-a")
    assert result[0] == rows[0]
    for original, converted in zip(rows[1:], result[1:], strict=True):
        assert converted[1] == pseudonymiser.pseudonymise(original[1])
        assert converted[0] == original[0] and converted[2:] == original[2:]
    assert_no_nir(target.read_text(), *NIRS)
    assert leftovers(tmp_path) == []


def test_unquoted_lines_are_kept_byte_for_byte(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    target = tmp_path / "out.csv"
    source.write_bytes(
        b"id,nir,amount\r\n"
        b"1,185057800608491,0010.50\r\n"
        b'2, 1 85 05 78 006 084 91 ,"quoted, kept"\r\n'
        b"3,282049741112380,\xc3\xa9t\xc3\xa9\r\n"
    )
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 0, err
    pseudonym = Pseudonymiser(KEY, purpose="p").pseudonymise
    assert (
        target.read_bytes()
        == (
            "id,nir,amount\r\n"
            f"1,{pseudonym(NIRS[0])},0010.50\r\n"
            f'2,{pseudonym(NIRS[0])},"quoted, kept"\r\n'
            f"3,{pseudonym(NIRS[3])},été\r\n"
        ).encode()
    )


def test_bom_crlf_and_quoted_nir_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    target = tmp_path / "out.csv"
    source.write_bytes(
        b"\xef\xbb\xbf"
        + b'"nir";"comment"\r\n'
        + b'"1 85 05 78 006 084 91";"a; b"\r\n'
        + b'282042a12345617;"two\r\nlines"\r\n'
    )
    code, _, err = run(
        capsys, "pseudonymise", "--key-env", "NOT_USED_BELOW", "--purpose", "p",
        "--column", "nir", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 2  # the variable is not set
    assert "NOT_USED_BELOW" in err
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", "--delimiter", ";", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 0, err
    data = target.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == 4  # three records, one embedded
    rows = read_rows(target, ";")
    pseudonym = Pseudonymiser(KEY, purpose="p").pseudonymise
    assert rows == [
        ["nir", "comment"],
        [pseudonym(NIRS[0]), "a; b"],
        [pseudonym(NIRS[2]), "two\r\nlines"],
    ]


def test_tab_delimiter_and_key_env(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIRGUARD_CLI_TEST_KEY", KEY.to_text())
    source = tmp_path / "in.tsv"
    target = tmp_path / "out.tsv"
    source.write_text("a\tnir\n1\t185057800608491\n")
    code, _, err = run(
        capsys, "pseudonymise", "--key-env", "NIRGUARD_CLI_TEST_KEY", "--purpose", "p",
        "--column", "nir", "--delimiter", "tab", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 0, err
    expected = Pseudonymiser(KEY, purpose="p").pseudonymise(NIRS[0])
    assert target.read_text() == f"a\tnir\n1\t{expected}\n"


def test_a_delimiter_that_occurs_in_pseudonyms_is_quoted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    target = tmp_path / "out.csv"
    source.write_text("x:nir:y\n1:185057800608491:z\n")
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", "--delimiter", ":", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 0, err
    expected = Pseudonymiser(KEY, purpose="p").pseudonymise(NIRS[0])
    assert read_rows(target, ":") == [["x", "nir", "y"], ["1", expected, "z"]]


def test_stdout_when_no_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("nir\n185057800608491\n")
    code, out, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", str(source),
    )  # fmt: skip
    assert code == 0, err
    assert out == f"nir\n{Pseudonymiser(KEY, purpose='p').pseudonymise(NIRS[0])}\n"


# -- invalid rows under each policy -----------------------------------------------------------

INVALID_ROWS = [
    ["id", "nir"],
    ["1", "185057800608491"],
    ["2", "185057800608490"],  # wrong key
    ["3", ""],  # empty
    ["4"],  # no such field
    ["5", "282049741112380"],
]


def _policy_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, policy: str, jobs: str
) -> tuple[int, str, Path]:
    source = tmp_path / "in.csv"
    target = tmp_path / "out.csv"
    write_csv(source, INVALID_ROWS)
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", "--on-invalid", policy, "--jobs", jobs, str(source),
        "-o", str(target),
    )  # fmt: skip
    assert_no_nir(err, "185057800608491", "282049741112380")
    assert "185057800608490" not in err and "1850578006084" not in err
    return code, err, target


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_fail_policy_stops_with_the_row_number(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, jobs: str
) -> None:
    code, err, target = _policy_run(capsys, tmp_path, key_file, "fail", jobs)
    assert code == 1
    assert "row 2 (line 3)" in err
    assert "[key]" in err
    assert "no output file written" in err
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_fail_policy_keeps_an_existing_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    (tmp_path / "out.csv").write_text("previous run\n")
    code, _, target = _policy_run(capsys, tmp_path, key_file, "fail", "1")
    assert code == 1
    assert target.read_text() == "previous run\n"


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_blank_policy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, jobs: str
) -> None:
    code, err, target = _policy_run(capsys, tmp_path, key_file, "blank", jobs)
    assert code == 0
    assert "5 rows (5 lines), 2 pseudonymised, 3 invalid (blanked)" in err
    pseudonym = Pseudonymiser(KEY, purpose="p").pseudonymise
    assert read_rows(target) == [
        ["id", "nir"],
        ["1", pseudonym("185057800608491")],
        ["2", ""],
        ["3", ""],
        ["4"],
        ["5", pseudonym("282049741112380")],
    ]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_drop_policy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, jobs: str
) -> None:
    code, err, target = _policy_run(capsys, tmp_path, key_file, "drop", jobs)
    assert code == 0
    assert "5 rows (5 lines), 2 pseudonymised, 3 invalid (dropped)" in err
    pseudonym = Pseudonymiser(KEY, purpose="p").pseudonymise
    assert read_rows(target) == [
        ["id", "nir"],
        ["1", pseudonym("185057800608491")],
        ["5", pseudonym("282049741112380")],
    ]


def test_row_numbers_count_records_not_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text('nir,note\n185057800608491,"a\nb\nc"\n185057800608490,x\n')
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", str(source), "-o", str(tmp_path / "out.csv"),
    )  # fmt: skip
    assert code == 1
    assert "row 2 (line 5)" in err


# -- configuration errors ---------------------------------------------------------------------


def test_missing_column_is_a_clear_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("185057800608491,b\n1,2\n")  # no header: the first row is data
    target = tmp_path / "out.csv"
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 2
    assert "column 'nir' not found" in err
    assert_no_nir(err, "185057800608491")
    assert not target.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--delimiter", "ab"], "--delimiter"),
        (["--delimiter", '"'], "--delimiter"),
        (["--encoding", "nope"], "unknown encoding"),
        (["--encoding", "utf-16"], "ASCII-compatible"),
        (["--jobs", "-1"], "--jobs"),
        (["--purpose", ""], "purpose"),
    ],
)
def test_bad_options(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key_file: Path,
    argv: list[str],
    message: str,
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("nir\n185057800608491\n")
    target = tmp_path / "out.csv"
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", *argv, str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 2
    assert message in err
    assert not target.exists()


def test_key_problems_are_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("nir\n185057800608491\n")
    bad = tmp_path / "bad.key"
    bad.write_text("nirguard-key:v1:k1:tooshort\n")
    for argv in (
        [],
        ["--key-file", str(tmp_path / "missing.key")],
        ["--key-file", str(bad)],
    ):
        code, _, err = run(
            capsys, "pseudonymise", *argv, "--purpose", "p", "--column", "nir", str(source)
        )
        assert code == 2, argv
        assert "tooshort" not in err
    with pytest.raises(SystemExit) as info:  # argparse: --purpose is required
        main(["pseudonymise", "--column", "nir", str(source)])
    assert info.value.code == 2
    capsys.readouterr()


def test_missing_input_and_empty_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    base = ["pseudonymise", "--key-file", str(key_file), "--purpose", "p", "--column", "nir"]
    code, _, err = run(capsys, *base, str(tmp_path / "missing.csv"))
    assert code == 2
    (tmp_path / "empty.csv").write_text("")
    code, _, err = run(capsys, *base, str(tmp_path / "empty.csv"))
    assert code == 2
    assert "empty" in err


def test_unbalanced_quotes_are_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text('nir,note\n185057800608491,"never closed\n185057800608491,x\n')
    target = tmp_path / "out.csv"
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 2
    assert "unbalanced quotes" in err
    assert "(line 2)" in err
    assert not target.exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_invalid_utf8_is_reported_with_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path, jobs: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_bytes(b"nir,x\n185057800608491,a\n185057800608491,\xff\n")
    target = tmp_path / "out.csv"
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", "--jobs", jobs, str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 2
    assert "not valid utf-8 (line 3)" in err
    assert not target.exists()
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", "--encoding", "latin-1", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert target.read_bytes().endswith(b",\xff\n")


def test_blank_lines_are_kept_and_not_counted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("nir,x\n185057800608491,1\n\n282049741112380,2\n\n")
    target = tmp_path / "out.csv"
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert "2 rows (4 lines), 2 pseudonymised" in err
    pseudonym = Pseudonymiser(KEY, purpose="p").pseudonymise
    expected = f"nir,x\n{pseudonym(NIRS[0])},1\n\n{pseudonym(NIRS[3])},2\n\n"
    assert target.read_text() == expected


def test_no_final_newline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_file: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("nir\n185057800608491")
    target = tmp_path / "out.csv"
    code, _, err = run(
        capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
        "--column", "nir", str(source), "-o", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert target.read_text() == f"nir\n{Pseudonymiser(KEY, purpose='p').pseudonymise(NIRS[0])}\n"


# -- tokenise / detokenise --------------------------------------------------------------------


def test_tokenise_detokenise_round_trip_with_rotation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old_file = tmp_path / "old.key"
    new_file = tmp_path / "new.key"
    old_file.write_text(OLD_KEY.to_text())
    new_file.write_text(KEY.to_text())
    old_file.chmod(0o600)
    new_file.chmod(0o600)
    source = tmp_path / "in.csv"
    tokens = tmp_path / "tokens.csv"
    back = tmp_path / "back.csv"
    rows = sample_rows()
    write_csv(source, rows)
    common = ["--purpose", "research", "--column", "nir"]
    code, _, err = run(
        capsys, "tokenise", "--key-file", str(old_file), *common, str(source), "-o", str(tokens)
    )
    assert code == 0, err
    assert "4 rows (6 lines), 4 tokenised, 0 invalid" in err
    assert_no_nir(tokens.read_text(), *NIRS)
    tokeniser = Tokeniser(OLD_KEY, purpose="research")
    assert [row[1] for row in read_rows(tokens)[1:]] == [tokeniser.tokenise(n) for n in NIRS]
    # after a rotation: the new key is current, the old one still detokenises
    code, _, err = run(
        capsys, "detokenise", "--key-file", str(new_file), "--key-file", str(old_file), *common,
        str(tokens), "-o", str(back),
    )  # fmt: skip
    assert code == 0, err
    assert "4 rows (6 lines), 4 detokenised, 0 invalid" in err
    assert_no_nir(err, *NIRS)
    result = read_rows(back)
    assert [row[1] for row in result[1:]] == [nir.validate(n) for n in NIRS]
    assert [row[2:] for row in result] == [row[2:] for row in rows]
    assert stat.S_IMODE(back.stat().st_mode) == 0o600  # it holds NIRs again
    # without the old key, the tokens are refused
    code, _, err = run(
        capsys, "detokenise", "--key-file", str(new_file), *common, str(tokens),
        "-o", str(tmp_path / "refused.csv"),
    )  # fmt: skip
    assert code == 1
    assert "row 1" in err and "invalid token" in err
    assert not (tmp_path / "refused.csv").exists()


def test_duplicate_key_ids_are_refused(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    code, _, err = run(
        capsys, "detokenise", "--key-file", str(key_file), "--key-file", str(key_file),
        "--purpose", "p", "--column", "nir", "-",
    )  # fmt: skip
    assert code == 2
    assert "twice" in err


# -- several blocks, several processes --------------------------------------------------------


def test_many_blocks_same_output_in_one_or_two_processes(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(csv_blocks, "BLOCK_BYTES", 500)  # many small blocks
    generator = NIRGenerator(seed=21)
    rows = [["id", "nir", "name", "note"]]
    for index, value in enumerate(generator.many(2000)):
        spelled = nir.format(value) if index % 3 == 0 else value
        note = "multi\nline, quoted" if index % 17 == 0 else ('a "quote"' if index % 5 == 0 else "")
        rows.append([str(index), spelled, f"name {index}", note])
    source = tmp_path / "in.csv"
    write_csv(source, rows)
    outputs = []
    for jobs in ("1", "2", "3"):
        target = tmp_path / f"out{jobs}.csv"
        code, _, err = run(
            capsys, "pseudonymise", "--key-file", str(key_file), "--purpose", "p",
            "--column", "nir", "--jobs", jobs, str(source), "-o", str(target),
        )  # fmt: skip
        assert code == 0, err
        assert "2,000 rows (2,118 lines), 2,000 pseudonymised, 0 invalid" in err
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    expected = Pseudonymiser(KeyRing(KEY), purpose="p").pseudonymise_many(r[1] for r in rows[1:])
    result = read_rows(tmp_path / "out1.csv")
    assert [row[1] for row in result[1:]] == expected
    assert [row[2:] for row in result] == [row[2:] for row in rows]


def test_split_point_respects_quotes() -> None:
    data = b'a,b\n1,"x\ny"\n2,z'
    assert csv_blocks.split_point(data) == data.index(b"2,z")
    assert csv_blocks.split_point(b'1,"open\nstill') == -1
    assert csv_blocks.split_point(b"no newline") == -1
    blocks = list(csv_blocks.read_blocks(io.BytesIO(b'3,"p\nq"\n4,w\n'), b'1,"x\ny"\n2,'))
    assert b"".join(blocks) == b'1,"x\ny"\n2,3,"p\nq"\n4,w\n'
    for block in blocks[:-1]:
        assert block.endswith(b"\n") and block.count(b'"') % 2 == 0


# -- interruption (real processes) ------------------------------------------------------------


def _default_sigint() -> None:
    # A shell starts a background job with SIGINT ignored, and an ignored signal stays
    # ignored across exec: Python then installs no KeyboardInterrupt handler and the CLI
    # never sees the Ctrl-C this test sends. The child starts with the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(
    tmp_path: Path, key_file: Path, target: Path, jobs: str = "1"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "nirguard", "pseudonymise", "--key-file", str(key_file),
            "--purpose", "p", "--column", "nir", "--jobs", jobs, "-o", str(target),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
    )  # fmt: skip


def _wait_for_temp(directory: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not leftovers(directory):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the command never created its temporary output"
        time.sleep(0.05)


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interruption_leaves_no_output(
    tmp_path: Path, key_file: Path, signum: int, jobs: str
) -> None:
    target = tmp_path / "out.csv"
    process = _start(tmp_path, key_file, target, jobs)
    assert process.stdin is not None
    process.stdin.write(b"nir\n" + b"185057800608491\n" * 50_000)
    process.stdin.flush()
    _wait_for_temp(tmp_path, process)  # running, blocked on more input
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert b"interrupted" in err
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_interruption_when_started_with_sigint_ignored(tmp_path: Path, key_file: Path) -> None:
    # What a test runner started as a background job (`pytest &`, CI scripts) passes on.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        process = _start(tmp_path, key_file, tmp_path / "out.csv")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert process.stdin is not None
    process.stdin.write(b"nir\n" + b"185057800608491\n" * 20_000)
    process.stdin.flush()
    _wait_for_temp(tmp_path, process)
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert leftovers(tmp_path) == []


def test_failure_in_a_subprocess_leaves_no_output(tmp_path: Path, key_file: Path) -> None:
    target = tmp_path / "out.csv"
    process = _start(tmp_path, key_file, target)
    rows = b"185057800608491\n" * 30_000 + b"185057800608490\n" + b"185057800608491\n" * 10
    _, err = process.communicate(b"nir\n" + rows, timeout=120)
    assert process.returncode == 1
    assert b"row 30001" in err
    assert b"185057800608490" not in err
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_progress_only_on_a_terminal(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("nir\n" + "185057800608491\n" * 10)
    argv = ["pseudonymise", "--key-file", str(key_file), "--purpose", "p", "--column", "nir"]
    code, _, err = run(capsys, *argv, str(source), "-o", str(tmp_path / "a.csv"))
    assert code == 0
    assert "\r" not in err  # not a terminal: the summary only
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run(capsys, *argv, str(source), "-o", str(tmp_path / "b.csv"))
    assert code == 0
    assert "\r[" in err and "10 rows" in err
    assert_no_nir(err, "185057800608491")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


# -- property: any CSV the csv module writes comes back with only the column changed ----------

_FIELD = st.text(alphabet=st.sampled_from(list('ab ,;:\t"\r\né€x0123456789-')), max_size=8)


@st.composite
def _nir_cell(draw: st.DrawFn) -> str:
    canonical = NIRGenerator(seed=draw(st.integers(0, 10_000))).generate()
    spelling = draw(st.sampled_from(["compact", "spaced", "lower", "padded", "bad"]))
    if spelling == "spaced":
        return nir.format(canonical)
    if spelling == "lower":
        return canonical.lower()
    if spelling == "padded":
        return f"  {canonical} "
    if spelling == "bad":
        return canonical[:13] + f"{int(canonical[13:]) % 97 + 1:02d}"
    return canonical


@given(
    rows=st.lists(st.tuples(_FIELD, _nir_cell(), _FIELD), max_size=25),
    column_first=st.booleans(),
    delimiter=st.sampled_from([",", ";", "\t", ":"]),
    terminator=st.sampled_from(["\n", "\r\n"]),
    block=st.sampled_from([8, 64, 1 << 18]),
    policy=st.sampled_from(["blank", "drop"]),
)
@settings(max_examples=150, deadline=None)
def test_random_csv_round_trip(
    rows: list[tuple[str, str, str]],
    column_first: bool,
    delimiter: str,
    terminator: str,
    block: int,
    policy: str,
) -> None:
    header = ["nir", "a", "b"] if column_first else ["a", "nir", "b"]
    table = [[n, a, b] if column_first else [a, n, b] for a, n, b in rows]
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator=terminator).writerows([header, *table])
    text = buffer.getvalue()
    # The reference reading is the csv module's (Python 3.11's writer leaves a lone "\r"
    # unquoted when the terminator is "\n": such input is malformed for csv too).
    try:
        parsed = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error:
        parsed = None
    source, sink = io.BytesIO(text.encode()), io.BytesIO()
    with blocks_of(block):
        converter = pseudonymising(KEY, source, sink, delimiter=delimiter, policy=policy)
        if parsed is None:
            with pytest.raises(csv_blocks.Malformed):
                converter.run()
            return
        summary = converter.run()
    column = header.index("nir")
    pseudonymiser = Pseudonymiser(KEY, purpose="prop")
    expected = [header]
    records = [row for row in parsed[1:] if row]  # blank lines are copied, not counted
    for row in parsed[1:]:
        if not row:
            expected.append(row)
        elif len(row) > column and nir.is_valid(row[column]):
            new = pseudonymiser.pseudonymise(row[column])
            expected.append([*row[:column], new, *row[column + 1 :]])
        elif policy == "blank":
            expected.append([*row[:column], "", *row[column + 1 :]] if len(row) > column else row)
    output = sink.getvalue().decode()
    assert list(csv.reader(io.StringIO(output, newline=""), delimiter=delimiter)) == expected
    valid = sum(len(row) > column and nir.is_valid(row[column]) for row in records)
    lines = len(list(io.StringIO(text, newline=""))) - 1  # physical lines after the header
    rows_part = f"{len(records)} row{'' if len(records) == 1 else 's'}"
    lines_part = f"{lines} line{'' if lines == 1 else 's'}"
    assert summary.startswith(f"{rows_part} ({lines_part}), {valid} pseudonymised")
