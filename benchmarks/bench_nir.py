"""Throughput of nirguard.nir.validate vs python-stdnum's stdnum.fr.nir.validate.

Same 200,000 inputs for both, same run; prints ratios (higher = nirguard faster):
(a) compact valid input, (b) a mixed set (metropolitan, Corsica, overseas,
abroad; compact and spaced; half invalid), both with strict=True; and parse.

    python benchmarks/bench_nir.py [--count 200000]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, ratio_line

from nirguard import nir
from nirguard.testing import NIRGenerator


def mixed_inputs(count: int, seed: int = 1) -> list[str]:
    gen = NIRGenerator(seed)
    rng = random.Random(seed)
    places = ["metropolitan", "corsica", "overseas", "abroad"]
    out = []
    for i in range(count):
        value = gen.generate(place=places[i % 4])  # type: ignore[arg-type]
        if rng.random() < 0.5:  # invalid: a wrong key, a wrong digit, a short number, junk
            kind = rng.randrange(4)
            if kind == 0:
                value = value[:13] + f"{(int(value[13:]) % 97) + 1:02d}"
            elif kind == 1:
                pos = rng.choice([0, 3, 8, 11])
                value = value[:pos] + str((int(value[pos]) + 1) % 10) + value[pos + 1 :]
            elif kind == 2:
                value = value[:13]
            else:
                value = value[:7] + "x" + value[8:]
        if rng.random() < 0.5:
            value = nir.format(value) if nir.is_valid(value, strict=False) else " ".join(value)
        out.append(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200_000)
    args = parser.parse_args()
    from stdnum.exceptions import ValidationError as StdnumError
    from stdnum.fr import nir as stdnum_nir

    compact = NIRGenerator(2022).many(args.count)
    mixed = mixed_inputs(args.count)

    def ours(values: list[str]) -> None:
        validate = nir.validate
        for value in values:
            try:
                validate(value)
            except ValueError:
                pass

    def ours_parse(values: list[str]) -> None:
        parse = nir.parse
        for value in values:
            try:
                parse(value)
            except ValueError:
                pass

    def theirs(values: list[str]) -> None:
        validate = stdnum_nir.validate
        for value in values:
            try:
                validate(value)
            except StdnumError:
                pass

    rows = []
    for label, values in (("(a) compact valid", compact), ("(b) mixed, half invalid", mixed)):
        t_ours = best_of(lambda v=values: ours(v))
        t_parse = best_of(lambda v=values: ours_parse(v))
        t_std = best_of(lambda v=values: theirs(v))
        rows.append((label, t_ours, t_parse, t_std))
    n = args.count
    print(f"nirguard.nir vs stdnum.fr.nir on {n:,} inputs (best of 5, strict=True)")
    for label, t_ours, t_parse, t_std in rows:
        print(
            f"  {label:<26} validate {t_ours / n * 1e9:7.0f} ns  parse {t_parse / n * 1e9:7.0f} ns"
            f"  stdnum {t_std / n * 1e9:7.0f} ns"
        )
    print(
        ratio_line(
            "(a) validate, compact valid: nirguard / stdnum throughput",
            rows[0][3] / rows[0][1],
            ">= 5x",
        )
    )
    print(
        ratio_line(
            "(b) validate, mixed set: nirguard / stdnum throughput",
            rows[1][3] / rows[1][1],
            ">= 3x",
        )
    )
    print(
        ratio_line(
            "    parse, compact valid: nirguard / stdnum throughput",
            rows[0][3] / rows[0][2],
            "report",
        )
    )
    print(
        ratio_line(
            "    parse, mixed set: nirguard / stdnum throughput", rows[1][3] / rows[1][2], "report"
        )
    )


if __name__ == "__main__":
    main()
