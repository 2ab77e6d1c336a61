"""Build ``twinbayes/data/phenobarbital.csv`` from R's ``nlme::Phenobarb`` (run once; output committed).

Source: Grasela TH Jr, Donn SM (1985). Neonatal population pharmacokinetics of phenobarbital
derived from routine clinical data. Dev Pharmacol Ther 8:374-383; as distributed with R's
``nlme`` (Pinheiro & Bates 2000, Appendix A.23) and by Rdatasets
(vincentarelbundock/Rdatasets ``csv/nlme/Phenobarb.csv``, 744 rows, 59 infants, 155 levels;
SHA-256 of the file read: printed by this script).

Reshaped, values unchanged, into the tidy format of ``docs/patient-data.md``:

- covariates ``weight`` (birth weight, kg), ``apgar`` (5-minute Apgar score) and ``asphyxia``
  (1 if the Apgar score is below 5, else 0: NONMEM's ``APGR.LT.5``);
- doses by route ``iv``, and observations ``concentration``.  Units follow NONMEM's ``pheno.dta``
  (the same numbers), where the dose is the amount given in mg and levels are mg/L: with them the
  published estimates (CL 0.0047 L/h/kg, V 0.96 L/kg) reproduce the data.  nlme's help page
  labels the columns ug/kg and ug/L; read as per-kg doses the same numbers would not fit those
  published estimates.

Run: ``.venv/bin/python scripts/make_phenobarbital_data.py Phenobarb.csv``
"""

import sys
from pathlib import Path

from tidy_csv import convert

OUT = Path(__file__).resolve().parents[1] / "twinbayes" / "data" / "phenobarbital.csv"


def rows_of(records: list[dict]) -> list[tuple]:
    """Tidy rows: per infant its covariates at time 0, then doses and levels in file order."""
    out, seen = [], set()
    for r in records:
        s = r["Subject"]
        if s not in seen:
            seen.add(s)
            asphyxia = "1" if int(r["Apgar"]) < 5 else "0"
            out += [
                (s, "0", "h", "covariate", "weight", r["Wt"], "kg"),
                (s, "0", "h", "covariate", "apgar", r["Apgar"], "1"),
                (s, "0", "h", "covariate", "asphyxia", asphyxia, "1"),
            ]
        if r["dose"]:
            out.append((s, r["time"], "h", "dose", "iv", r["dose"], "mg"))
        if r["conc"]:
            out.append((s, r["time"], "h", "observation", "concentration", r["conc"], "mg/L"))
    return out


def main() -> None:
    convert(Path(sys.argv[1]), OUT, rows_of)


if __name__ == "__main__":
    main()
