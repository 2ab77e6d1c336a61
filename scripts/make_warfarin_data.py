"""Build ``twinbayes/data/warfarin.csv`` from the O'Reilly warfarin PK/PD data (run once; output committed).

Source: O'Reilly RA, Aggeler PM (1968). Studies on coumarin anticoagulant drugs. Initiation of
warfarin therapy without a loading dose. Circulation 38:169-177; and O'Reilly RA, Aggeler PM,
Leong LS (1963). Studies of the coumarin anticoagulant drugs: the pharmacodynamics of warfarin in
man. J Clin Invest 42:1542-1551. The NONMEM-format file of N. Holford's PK/PD courses, as
distributed by the DDMoRe PharmML examples (pharmml/pharmml-example @ 0df564b,
``mdl-to-pharmml-to-nmtran_9December/warfarin_conc_pca.csv``, 525 rows, 32 subjects, SHA-256
05f2e1ec2551c9e2db07b9160ea27dcc3574a4705049ede889b1930909a8847f); the same data are
``nlmixr2data::warfarin`` and the Monolix warfarin demo.

Reshaped, values unchanged, into the tidy format of ``docs/patient-data.md``: covariates
``weight`` (kg) and ``age`` (years) at time 0; one oral dose (mg, ``DVID = 0``); observations
``concentration`` (total plasma warfarin, mg/L, ``DVID = 1``) and ``pca`` (prothrombin complex
activity, % of normal, ``DVID = 2``).  Rows with ``MDV = 1`` (no measurement) are left out. The
source's sex column is not carried over (no bundled twin uses it).

Run: ``.venv/bin/python scripts/make_warfarin_data.py warfarin_conc_pca.csv``
"""

import sys
from pathlib import Path

from tidy_csv import convert

OUT = Path(__file__).resolve().parents[1] / "twinbayes" / "data" / "warfarin.csv"
SOURCE_SHA256 = "05f2e1ec2551c9e2db07b9160ea27dcc3574a4705049ede889b1930909a8847f"
OBSERVATIONS = {"1": ("concentration", "mg/L"), "2": ("pca", "%")}


def rows_of(records: list[dict]) -> list[tuple]:
    """Tidy rows: per subject its covariates at time 0, then the dose and measurements in file order."""
    out, seen = [], set()
    for r in records:
        s = r["ID"]
        if s not in seen:
            seen.add(s)
            out += [
                (s, "0", "h", "covariate", "weight", r["WT"], "kg"),
                (s, "0", "h", "covariate", "age", r["AGE"], "a"),
            ]
        if r["DVID"] == "0":
            out.append((s, r["TIME"], "h", "dose", "oral", r["AMT"], "mg"))
        elif r["MDV"] == "0":
            name, unit = OBSERVATIONS[r["DVID"]]
            out.append((s, r["TIME"], "h", "observation", name, r["DV"], unit))
    return out


def main() -> None:
    convert(Path(sys.argv[1]), OUT, rows_of, SOURCE_SHA256)


if __name__ == "__main__":
    main()
