"""Names from untrusted files: one validator before a name reaches a path, HTML or NetCDF.

Spec and study names become file names (``twins/NAME.nc``, ``figures/NAME_checks.png``,
``results/NAME``).  They must be plain identifiers: a letter, then letters, digits,
``_`` or ``-``, at most 64 characters, so no name can hold a path separator, ``..``,
a drive, markup or a control character.  :func:`inside` checks, in addition, that
every path twinbayes writes lies inside the folder it writes to.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..error import SpecError

__all__ = ["NAME_PATTERN", "check_name", "inside"]

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def check_name(value: object, field: str, what: str = "name") -> str:
    """``value`` if it is a plain identifier, else :class:`~twinbayes.spec.SpecError` naming ``field``."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise SpecError(
            field,
            f"{value!r} is not a valid {what}: use a letter, then letters, digits, '_' or '-' "
            "(at most 64 characters; it becomes a file name)",
        )
    return value


def inside(folder: Path, *parts: str) -> Path:
    """``folder / parts`` after checking that it resolves inside ``folder`` (else ``ValueError``)."""
    root = Path(folder).resolve()
    target = root.joinpath(*parts).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"refusing to write {target}: outside the results folder {root}")
    return target
