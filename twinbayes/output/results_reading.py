"""Opening a results folder that anyone may have changed: checked before anything is read.

A results folder is mailed, unzipped and shared, so ``report`` and ``update`` treat it as
untrusted input: it must carry twinbayes' marker, every file is read without following links
(:mod:`twinbayes.inputs.untrusted`), JSON and TOML must parse to what twinbayes wrote, and the twin
names in ``summary.json`` must be names a spec may have (they become file names).  Whatever is
wrong ends in :class:`~twinbayes.error.ResultsFolderError`, before any refit.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path

from ..error import ResultsFolderError
from ..inputs.names import check_name
from ..inputs.untrusted import exists_in_folder, read_in_folder
from ..spec.model_spec import SpecError
from .results import MARKER

__all__ = ["MAX_JSON_BYTES", "check_results_folder", "read_json", "read_study_copy", "read_summary"]

MAX_ENTRIES = 10_000
"""Most files and folders a results folder may hold (a study writes a few dozen)."""
MAX_JSON_BYTES = 50_000_000
"""Largest summary, provenance, history or study file read from a results folder."""


def read_json(folder: Path, name: str, kind: type):
    """The JSON file ``name`` of the folder, which must hold a ``kind`` (dict or list)."""
    raw = read_in_folder(folder, name, MAX_JSON_BYTES)
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ResultsFolderError(
            f"{folder / name}: not valid JSON ({exc}); run the study again"
        ) from None
    if not isinstance(value, kind):
        raise ResultsFolderError(
            f"{folder / name}: expected a JSON {'object' if kind is dict else 'list'}, found "
            f"{type(value).__name__}; run the study again"
        )
    return value


def read_study_copy(folder: Path) -> dict:
    """The folder's copy of the study file, parsed (empty when there is none)."""
    if not exists_in_folder(folder, "study.toml"):
        return {}
    raw = read_in_folder(folder, "study.toml", MAX_JSON_BYTES)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ResultsFolderError(
            f"{folder / 'study.toml'}: not a valid study copy ({exc}); run the study again"
        ) from None


def check_results_folder(folder: Path) -> None:
    """Refuse a folder without twinbayes' marker, or one holding anything but plain files and
    folders (a symbolic link, a device, a FIFO), before any of its files is read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsFolderError(f"{folder}: no such results folder")
    if not exists_in_folder(folder, MARKER):
        raise ResultsFolderError(
            f"{folder} is not a twinbayes results folder (it has no {MARKER} file); name the "
            "folder a twinbayes run wrote"
        )
    count = 0
    for root, dirs, files in os.walk(folder):  # links to folders are listed, never entered
        for name in dirs + files:
            count += 1
            mode = os.lstat(os.path.join(root, name)).st_mode
            if count > MAX_ENTRIES:
                raise ResultsFolderError(
                    f"{folder}: more than {MAX_ENTRIES} files; run the study again"
                )
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                what = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise ResultsFolderError(
                    f"{Path(root, name)}: {what}; a results folder holds plain files and folders "
                    "only (was it changed by hand?): run the study again"
                )


def read_summary(folder: Path) -> tuple[dict, dict]:
    """``summary.json`` of a results folder and its twins (name -> verdict), checked.

    Twin names become file names (``twins/NAME.nc``), so they must be names a spec may have
    (:func:`~twinbayes.inputs.names.check_name`); every verdict needs ``converged`` and ``reasons``.
    """
    doc = read_json(folder, "summary.json", dict)
    twins = doc.get("twins", doc)
    if not isinstance(twins, dict) or not isinstance(doc.get("outcome", {}), dict):
        raise ResultsFolderError(
            f"{folder / 'summary.json'}: no table of twins; run the study again"
        )
    for name, verdict in twins.items():
        try:
            check_name(name, "twins")
        except SpecError as exc:
            raise ResultsFolderError(f"{folder / 'summary.json'}: {exc}") from None
        if (
            not isinstance(verdict, dict)
            or not isinstance(verdict.get("converged"), bool)
            or not isinstance(verdict.get("reasons"), list)
        ):
            raise ResultsFolderError(
                f"{folder / 'summary.json'}: twin {name!r} has no verdict (converged, reasons); "
                "run the study again"
            )
    return doc, twins
