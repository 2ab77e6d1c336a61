"""Shared by the ``make_*_data.py`` scripts: read a source table, write tidy patient rows."""

import csv
import hashlib
from collections.abc import Callable
from pathlib import Path

HEADER = ["subject", "time", "time_unit", "event", "name", "value", "unit"]


def convert(
    src: Path, out: Path, rows_of: Callable[[list[dict]], list[tuple]], sha256: str = ""
) -> None:
    """Write ``rows_of(records of src)`` to ``out`` in the tidy format of docs/patient-data.md.

    With ``sha256``, refuse a source whose digest differs (the documented file, not another).
    """
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    print("source sha256", digest)
    if sha256 and digest != sha256:
        raise SystemExit(f"{src}: SHA-256 {digest} is not the documented source's {sha256}")
    with open(src, newline="") as fh:
        records = list(csv.DictReader(fh))
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(rows_of(records))
    print("wrote", out)
