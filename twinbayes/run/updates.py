"""Twins over time: extend a study's data with new observations, refit, and keep the history.

A results folder holds everything a study needs to run again: the study file
(``study.toml``), the specs (``specs/``), the patient's data so far
(``patient.csv``, with the pseudonymous key in place of the identifier) and the
history of earlier runs (``history.json``: per run, the data's extent, each
twin's elpd and weight, and the between-twin share of every scenario).
:func:`update_results` checks the new observations against the data so far,
refits every twin with the same seeds, gate and escalation, recomputes the
comparison and the disagreement, appends to the history and replaces the folder
atomically.  An update that is refused (observations out of order or before the
last one, duplicates, a unit that cannot be converted, another patient's data)
raises :class:`~twinbayes.inputs.patient.PatientDataError` before anything is written:
the folder stays byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..error import ResultsFolderError
from ..inputs.names import check_name
from ..inputs.patient import MAX_BYTES as MAX_PATIENT_BYTES
from ..inputs.patient import Patient, PatientDataError
from ..inputs.privacy import PSEUDONYM, pseudonym
from ..inputs.units import UnitError, conversion_factor
from ..inputs.untrusted import checked_in_folder, exists_in_folder, read_in_folder
from ..output.results_reading import MAX_JSON_BYTES, check_results_folder, read_json, read_summary
from ..spec.model_spec import SpecError
from .study import Study, parse_study

__all__ = ["merge_new_data", "load_results", "update_results", "history_entry"]

from ..output.history import history_entry  # re-exported: its old place

HISTORY = "history.json"
PATIENT = "patient.csv"


def merge_new_data(old: Patient, new: Patient, source: str) -> Patient:
    """The patient ``old`` with the events of ``new`` appended, after checking they can follow.

    Raises
    ------
    PatientDataError
        When ``new`` holds another patient's data, an observation at or before the last
        observation so far, a dose before it, a row twice, a unit that does not convert
        to the unit of that observable so far, or a covariate with another value.
    """
    _check_same_patient(old, new, source)
    factor = conversion_factor(new.time_unit, old.time_unit)
    old_rows = old.rows()
    last_obs = float(np.max(old.data.obs_time.values))
    units = {n: u for _, _, e, n, _, u, _ in old_rows if e == "observation"}
    covariates = {n: (v, u) for _, _, e, n, v, u, _ in old_rows if e == "covariate"}
    added, seen = [], set()
    for t, _, event, name, v, unit, dur in new.rows():
        t, dur = t * factor, dur * factor
        where = f"{source}: {event} {name!r} at t={t:g} {old.time_unit}"
        if event == "covariate":
            if name in covariates and covariates[name] != (v, unit):
                raise PatientDataError(
                    f"{where}: covariate {name!r} was {covariates[name][0]:g} {covariates[name][1]}, now {v:g} {unit}; "
                    "covariates are constant within a study: start a new study for the new value"
                )
            if name not in covariates:
                added.append((0.0, old.time_unit, event, name, v, unit, 0.0))
            continue
        if t <= last_obs:
            raise PatientDataError(
                f"{where} is not after the last observation so far (t={last_obs:g} {old.time_unit}); "
                "an update adds later data only: rerun the study for corrections of earlier data"
            )
        if (t, event, name) in seen:
            raise PatientDataError(f"{where} appears twice in the new data; keep one row")
        seen.add((t, event, name))
        if event == "observation" and name in units:
            try:
                conversion_factor(unit, units[name])
            except UnitError as exc:
                raise PatientDataError(
                    f"{where}: unit {unit!r} does not convert to {units[name]!r} of the data so far ({exc})"
                ) from None
        added.append((t, old.time_unit, event, name, v, unit, dur))
    return _rebuild(old, old_rows + added, source)


def _check_same_patient(old: Patient, new: Patient, source: str) -> None:
    """New data without a subject belong to this patient; with one, it must be this patient's."""
    if not new.id:
        return
    if old.label not in (new.id, pseudonym(new.id)):
        raise PatientDataError(
            f"{source}: the new data are of another patient (subject {new.label!r}, results of "
            f"{old.label!r}); pseudonyms match only under the same TWINBAYES_PSEUDONYM_KEY"
        )


def _rebuild(old: Patient, rows: list, source: str) -> Patient:
    """A patient from rows (validated as a file would be), keeping ``old``'s identity."""
    from ..inputs.patient import build_patient

    covs = [r for r in rows if r[2] == "covariate"]
    events = sorted((r for r in rows if r[2] != "covariate"), key=lambda r: r[0])
    sha = hashlib.sha256(json.dumps(covs + events).encode()).hexdigest()
    merged = build_patient(covs + events, list(range(1, len(rows) + 1)), old.id, source, sha=sha)
    merged.data.attrs.update({k: v for k, v in old.data.attrs.items() if k == "keep_identifiers"})
    return merged


def load_results(folder: str | Path) -> tuple[Study, Patient, list[dict]]:
    """The study, the patient's data so far and the history of a results folder.

    The folder's own copies are used (``specs/``, ``patient.csv``), not the files the
    study first named, so a folder can be updated after it was moved.  The folder is
    untrusted: it must carry twinbayes' marker, every file is read without following a
    link, ``summary.json`` and ``provenance.json`` are checked as ``report`` checks them,
    and the subject of ``patient.csv`` must be a pseudonym (or the study copy keeps
    identifiers), all before any twin is refitted.

    Raises
    ------
    ResultsFolderError
        A file is missing, damaged, a link or not a regular file.
    """
    folder = Path(folder)
    check_results_folder(folder)
    for needed in ("study.toml", PATIENT, HISTORY):
        if not exists_in_folder(folder, needed):
            raise ResultsFolderError(
                f"{folder} has no {needed}: it was written before updates were possible; run the study again"
            )
    read_summary(folder)
    read_json(folder, "provenance.json", dict)
    study = _study_copy(folder, read_in_folder(folder, "study.toml", MAX_JSON_BYTES))
    patient = _patient_copy(folder, study)
    return study, patient, read_json(folder, HISTORY, list)


def _study_copy(folder: Path, raw: bytes) -> Study:
    """The folder's study copy, reading its data and specs from the folder itself."""
    where = str(folder / "study.toml")
    try:
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
        doc["patient"] = {k: v for k, v in doc["patient"].items() if k != "subject"}
        doc["patient"]["data"] = PATIENT
        specs = [f"specs/{_spec_file(s)}" for s in doc["twins"]["specs"]]
        doc["twins"]["specs"] = [str(checked_in_folder(folder, s)) for s in specs]
        return parse_study(doc, folder / "study.toml", text)
    except SpecError as exc:
        raise exc.in_file(where) from None
    except (
        tomllib.TOMLDecodeError,
        UnicodeDecodeError,
        KeyError,
        TypeError,
        AttributeError,
    ) as exc:
        raise ResultsFolderError(
            f"{where}: the results folder's study copy is damaged ({exc}); run the study again"
        ) from None


def _patient_copy(folder: Path, study: Study) -> Patient:
    """``patient.csv`` of the folder, whose subject is what outputs may show.

    It is shown as it is only if it is a pseudonym (``p-`` and 12 hex digits, what
    :func:`~twinbayes.inputs.privacy.pseudonym` writes) or the study copy keeps identifiers: an
    identifier planted in the file is refused, never published.
    """
    raw = read_in_folder(folder, PATIENT, MAX_PATIENT_BYTES)
    patient = Patient.from_csv_bytes(raw, str(folder / PATIENT))
    if patient.id and not study.keep_identifiers and not PSEUDONYM.fullmatch(patient.id):
        raise ResultsFolderError(
            f"{folder / PATIENT}: its subject is not a pseudonym (p- and 12 hex digits) although "
            "the study does not keep identifiers: the file was changed by hand or is another "
            "patient's; run the study again from the original data"
        )
    return patient.keeping_identifiers()


def _spec_file(ref: str) -> str:
    """The file name :meth:`ResultsFolder.write_study` gave the copy of spec ``ref``."""
    stem = Path(str(ref).removeprefix("bundled:")).name.removesuffix(".toml")
    return check_name(stem, "twins.specs", "spec file") + ".toml"


def update_results(
    folder: str | Path,
    new_data: str | Path,
    *,
    subject: str | int | None = None,
    progress: bool = True,
    figures: bool = True,
    quiet: bool = False,
    command: list[str] | None = None,
    adjust: Callable[[Study], Study] | None = None,
):
    """Add the observations in ``new_data`` to a results folder's study and run it again.

    Every twin is refitted to all data so far (same seeds, gate and escalation), the
    comparison and the disagreement are recomputed, the run is appended to
    ``history.json``, and the folder is replaced atomically.  Refused updates raise
    before anything is written.  ``adjust`` may change the study first (the command
    line's sampler overrides).

    Returns
    -------
    StudyResult
    """
    from .pipeline import run_study

    study, patient, history = load_results(folder)
    if adjust is not None:
        study = adjust(study)
    new = Patient.from_file(new_data, subject=subject, mapping=study.fhir)
    merged = merge_new_data(patient, new, str(new_data))
    return run_study(
        study,
        folder,
        force=True,
        progress=progress,
        figures=figures,
        quiet=quiet,
        command=command,
        patient=merged,
        history=history,
    )
