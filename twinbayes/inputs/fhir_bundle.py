"""Patient data from HL7 FHIR R4 bundles (JSON), with privacy by default.

:func:`bundle_rows` turns a FHIR R4 ``Bundle`` into the rows of a :class:`~twinbayes.inputs.patient.Patient`
(:func:`twinbayes.inputs.fhir.read_bundle` builds the patient):

* ``Observation`` with a LOINC (or other) code, ``valueQuantity`` (value and UCUM code)
  and ``effectiveDateTime`` (or ``effectivePeriod.start``) -> an observation, or a covariate
  for the codes mapped to covariates (body weight, height, serum creatinine, ...);
* ``MedicationAdministration`` with ``dosage.dose`` and ``dosage.route`` ->
  a dose; an ``effectivePeriod`` with a start and an end makes it an infusion over that time;
* ``MedicationRequest`` with ``dosageInstruction`` -> a dosing scenario (:func:`read_requests`):
  the dose, ``timing.repeat`` (frequency per period, ``count`` or ``boundsDuration``, an
  infusion ``duration``) and the route;
* ``Patient`` -> the identifier of the data (its ``id``), shown only as the pseudonymous key
  (:mod:`twinbayes.inputs.privacy`), and the covariates ``age`` (whole years at time 0, 90 for anyone
  older than 89) and ``female`` (1 or 0, from ``gender``).  Names, other identifiers (MRN),
  addresses, telecoms and the birth date itself are never read into the patient.

A :class:`FhirMapping` says which code feeds which observable, covariate or route; the
defaults cover common LOINC codes and SNOMED CT routes, and a study file extends them
(``[patient.fhir]``, :meth:`FhirMapping.from_table`).  Times become hours since the first
dose (or the first event, without doses), with time zones honoured; a date without a time or
a time without a zone is refused.  Every problem is a
:class:`~twinbayes.inputs.patient.PatientDataError` naming the resource (``Observation/obs-17``), the
field and the fix.

The bundle is read with :mod:`json` and the fields used are checked one by one: the resource
model of ``fhir.resources`` (pydantic) took 26 s and 1.2 GB to validate a bundle of 100 000
Observations on this machine, over the 10 s budget of a clinical data pull; what twinbayes
reads is checked as strictly (types, required fields, units), and fuzzed (tests).

References
----------
HL7 FHIR R4 (4.0.1), https://hl7.org/fhir/R4/ (Bundle, Observation, MedicationAdministration).
"""

from __future__ import annotations

import calendar
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..error import PatientDataError
from ..spec.scenarios import MAX_DOSES, Scenario
from .units import UnitError, conversion_factor, parse_unit
from .untrusted import read_file

if (
    TYPE_CHECKING
):  # annotations only: a patient is built from these rows by twinbayes.inputs.patient
    from .patient import Patient

__all__ = [
    "FhirMapping",
    "FhirWarning",
    "bundle_rows",
    "read_requests",
    "to_bundle",
    "MAX_BUNDLE_BYTES",
]

MAX_BUNDLE_BYTES = 500_000_000
"""Largest bundle read (a patient's record, not a cohort export)."""

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
LOCAL = "urn:twinbayes:observable"
"""Code system for observables without a mapped code (written by :func:`to_bundle`)."""
LOCAL_INPUT = "urn:twinbayes:input"
"""Code system for forcing-input series (``input`` rows of the tidy CSV)."""
LOCAL_COVARIATE = "urn:twinbayes:covariate"
LOCAL_ROUTE = "urn:twinbayes:route"
_LOCAL = {"observations": LOCAL, "covariates": LOCAL_COVARIATE, "routes": LOCAL_ROUTE}


@dataclass(frozen=True)
class FhirMapping:
    """Which codes feed which observables, covariates and routes.

    Attributes
    ----------
    observations : dict
        ``(system, code)`` -> observable name; codes of :data:`LOCAL` map to their own code.
    covariates : dict
        ``(system, code)`` -> covariate name (the last value before the first dose is used).
    routes : dict
        ``(system, code)`` -> route name of the specs (``oral``, ``iv``, ...).
    medications : frozenset, optional
        ``(system, code)`` of the study's drug (e.g. RxNorm or ATC): only administrations whose
        ``medicationCodeableConcept`` has one of them are doses.  Default ``None``: every
        administration in the bundle is (a bundle pulled for one drug).
    """

    observations: dict[tuple[str, str], str] = field(
        default_factory=lambda: {
            (LOINC, "2345-7"): "glucose",  # Glucose [Mass/volume] in Serum or Plasma
            (LOINC, "14749-6"): "glucose",  # Glucose [Moles/volume] in Serum or Plasma
            (LOINC, "20448-7"): "insulin",  # Insulin [Units/volume] in Serum or Plasma
            (LOINC, "4049-3"): "concentration",  # Theophylline [Mass/volume] in Serum or Plasma
            (LOINC, "20578-1"): "concentration",  # Vancomycin [Mass/volume] in Serum or Plasma
        }
    )
    covariates: dict[tuple[str, str], str] = field(
        default_factory=lambda: {
            (LOINC, "29463-7"): "weight",  # Body weight
            (LOINC, "8302-2"): "height",  # Body height
            (LOINC, "2160-0"): "creatinine",  # Creatinine [Mass/volume] in Serum or Plasma
        }
    )
    routes: dict[tuple[str, str], str] = field(
        default_factory=lambda: {
            (SNOMED, "26643006"): "oral",  # Oral route
            (SNOMED, "47625008"): "iv",  # Intravenous route
            (SNOMED, "34206005"): "sc",  # Subcutaneous route
        }
    )

    medications: frozenset[tuple[str, str]] | None = None

    @classmethod
    def from_table(cls, raw: Any, where: str = "patient.fhir") -> FhirMapping:
        """The defaults extended by a study file's ``[patient.fhir]`` table.

        ``observations``, ``covariates`` and ``routes`` are tables of FHIR tokens
        ``"system|code"`` -> name; ``medications`` is a list of tokens.  Errors are
        ``ValueError`` naming the field (``patient.fhir.routes``).
        """
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: must be a table")
        unknown = set(raw) - {"observations", "covariates", "routes", "medications"}
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {sorted(unknown)}; expected observations, covariates, "
                "routes, medications"
            )
        base = cls()
        tables = {}
        for table in ("observations", "covariates", "routes"):
            entries = raw.get(table, {})
            if not isinstance(entries, dict):
                raise ValueError(f'{where}.{table}: must be a table of "system|code" = name')
            added = {}
            for token, name in entries.items():
                if not isinstance(name, str) or not name.isidentifier():
                    raise ValueError(
                        f"{where}.{table}.{token!r}: the name must be an identifier, got {name!r}"
                    )
                added[_token(token, f"{where}.{table}")] = name
            tables[table] = getattr(base, table) | added
        meds = raw.get("medications")
        if meds is not None:
            if not isinstance(meds, list) or not meds:
                raise ValueError(f'{where}.medications: must be a non-empty list of "system|code"')
            meds = frozenset(_token(m, f"{where}.medications") for m in meds)
        return cls(**tables, medications=meds)

    def code_of(self, name: str, table: str) -> tuple[str, str]:
        """The ``(system, code)`` that maps to ``name`` (for writing), else the table's local code."""
        for key, value in getattr(self, table).items():
            if value == name:
                return key
        return (_LOCAL[table], name)

    def name_of(self, codes: list[tuple[str, str]], table: str) -> str | None:
        """The name the first mapped code of ``codes`` has in ``table`` (local codes map to themselves)."""
        mapped = getattr(self, table)
        for system, code in codes:
            if system == _LOCAL[table]:
                return code
            if (system, code) in mapped:
                return mapped[(system, code)]
        return None


def _token(token: Any, where: str) -> tuple[str, str]:
    """``"system|code"`` (FHIR token search syntax) -> ``(system, code)``."""
    if not isinstance(token, str) or token.count("|") != 1 or "" in token.split("|"):
        raise ValueError(
            f'{where}: {token!r} is not a FHIR token "system|code" (e.g. "http://loinc.org|4049-3")'
        )
    system, code = token.split("|")
    return system, code


class FhirWarning(UserWarning):
    """Something in a bundle was read but deserves a look (duplicates, coincident records)."""


def _fail(where: str, what: str) -> PatientDataError:
    return PatientDataError(f"{where}: {what}")


def _get(obj: Any, key: str, kind: type | tuple, where: str, required: bool = True):
    """``obj[key]`` checked to be of ``kind``; a clear error naming the field otherwise."""
    if not isinstance(obj, dict):
        raise _fail(where, f"expected a JSON object, got {type(obj).__name__}")
    if key not in obj:
        if required:
            raise _fail(where, f"{key} is missing")
        return None
    value = obj[key]
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _fail(where, f"{key} must be {names}, got {type(value).__name__}")
    return value


def _instant(text: Any, where: str) -> datetime:
    """An ISO 8601 date-time with a time zone (FHIR ``dateTime`` with a time)."""
    if not isinstance(text, str) or "T" not in text:
        raise _fail(
            where, f"{text!r} is not a date-time with a time of day (YYYY-MM-DDThh:mm:ss+zz:zz)"
        )
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(where, f"{text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        raise _fail(
            where, f"{text!r} has no time zone; FHIR requires one with a time (e.g. +01:00 or Z)"
        )
    return value


def _coding(concept: Any, where: str) -> list[tuple[str, str]]:
    codings = _get(concept, "coding", list, where)
    out = []
    for i, c in enumerate(codings):
        here = f"{where}.coding[{i}]"
        out.append((_get(c, "system", str, here), _get(c, "code", str, here)))
    return out


def _quantity(q: Any, where: str) -> tuple[float, str]:
    value = _get(q, "value", (int, float), where)
    unit = _get(q, "code", str, where, required=False) or _get(q, "unit", str, where)
    try:
        value = float(value)
    except OverflowError:
        raise _fail(where, "value is too large") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _fail(where, f"value {value} is not a finite number")
    return value, unit


def _when(res: dict, where: str) -> tuple[datetime, float]:
    """Start time and duration (seconds) from ``effectiveDateTime`` or ``effectivePeriod``."""
    if "effectiveDateTime" in res:
        return _instant(res["effectiveDateTime"], f"{where}.effectiveDateTime"), 0.0
    period = _get(res, "effectivePeriod", dict, where)
    start = _instant(
        _get(period, "start", str, f"{where}.effectivePeriod"), f"{where}.effectivePeriod.start"
    )
    if "end" not in period:
        return start, 0.0
    end = _instant(period["end"], f"{where}.effectivePeriod.end")
    if end < start:
        raise _fail(where, "effectivePeriod ends before it starts")
    return start, (end - start).total_seconds()


def _observation(res: dict, mapping: FhirMapping, where: str) -> tuple | None:
    """``(time, kind, name, value, unit, 0, where)`` of a mapped Observation, else ``None``."""
    codes = _coding(_get(res, "code", dict, where), f"{where}.code")
    if (name := mapping.name_of(codes, "covariates")) is not None:
        kind = "covariate"
    elif (name := next((c for s_, c in codes if s_ == LOCAL_INPUT), None)) is not None:
        kind = "input"
    elif (name := mapping.name_of(codes, "observations")) is not None:
        kind = "observation"
    else:
        return None
    value, unit = _quantity(_get(res, "valueQuantity", dict, where), f"{where}.valueQuantity")
    t, _ = _when(res, where)
    return (t, kind, name, value, unit, 0.0, where)


def _is_the_drug(res: dict, mapping: FhirMapping, where: str) -> bool:
    """Whether a MedicationAdministration gives the study's drug (any, without ``mapping.medications``)."""
    if mapping.medications is None:
        return True
    concept = _get(res, "medicationCodeableConcept", dict, where, required=False)
    return concept is not None and bool(
        set(_coding(concept, f"{where}.medicationCodeableConcept")) & mapping.medications
    )


def _resources(bundle: Any, source: str):
    """``(resourceType, resource, where)`` of every entry not marked void (entered in error,
    cancelled, not done); ``where`` names the resource for error messages.

    A resource that appears twice (same type and id) is read once when both copies are equal
    (with a :class:`FhirWarning`) and refused when they differ.
    """
    if _get(bundle, "resourceType", str, source) != "Bundle":
        raise _fail(source, f"resourceType is {bundle['resourceType']!r}; expected a FHIR Bundle")
    seen: dict[tuple[str, str], dict] = {}
    entries = _get(bundle, "entry", list, source)
    refs = _patient_refs(entries, source)
    for i, entry in enumerate(entries):
        res = _get(entry, "resource", dict, f"{source}: entry[{i}]")
        kind = _get(res, "resourceType", str, f"{source}: entry[{i}].resource")
        # a Patient's id is the patient's identifier: messages name its entry instead
        rid = f"entry[{i}]" if kind == "Patient" else res.get("id", f"entry[{i}]")
        where = f"{source}: {kind}/{rid}"
        if isinstance(res.get("id"), str):
            first = seen.setdefault((kind, res["id"]), res)
            if first is not res:
                if first != res:
                    raise _fail(
                        where, "appears twice with different content; keep the correct version only"
                    )
                warnings.warn(
                    f"{where} appears twice (identical copies); read once",
                    FhirWarning,
                    stacklevel=4,
                )
                continue
        if kind in ABOUT_THE_PATIENT:
            _check_subject(res, refs, where)
        if res.get("status") not in ("entered-in-error", "cancelled", "not-done"):
            yield kind, res, where


ABOUT_THE_PATIENT = ("Observation", "MedicationAdministration", "MedicationRequest")
"""Resources read as the patient's own: their ``subject`` must be the bundle's Patient."""


def _patient_refs(entries: list, source: str) -> set[str]:
    """The references that name the bundle's Patient (``Patient/ID`` and its entry's ``fullUrl``)."""
    refs: set[str] = set()
    patients = [
        e["resource"]
        for e in entries
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "Patient"
    ]
    if len({str(p.get("id")) for p in patients}) > 1:
        raise _fail(
            source,
            f"the bundle holds {len(patients)} Patient resources; give one patient's bundle",
        )
    for i, entry in enumerate(entries):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "Patient":
            pid = _get(res, "id", str, f"{source}: entry[{i}].resource")
            refs = {f"Patient/{pid}"}
            if isinstance(entry.get("fullUrl"), str):
                refs.add(entry["fullUrl"])
    return refs


def _check_subject(res: dict, refs: set[str], where: str) -> None:
    """Refuse a resource about another patient than the bundle's (its id is not shown).

    A resource without ``subject`` belongs to the bundle's patient.  Without a Patient
    resource, the first subject seen is the patient and every other must be the same.
    """
    subject = res.get("subject")
    if subject is None:
        return
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str) or not ref:
        raise _fail(
            f"{where}.subject",
            "has no reference; name the bundle's Patient (Patient/ID) or leave subject out",
        )
    if not refs:
        refs.add(ref)
    if ref not in refs and not any(
        r.startswith("Patient/") and ref.endswith("/" + r) for r in refs
    ):
        raise _fail(
            f"{where}.subject",
            "refers to another patient than the bundle's Patient: a bundle holds one patient's "
            "data; export this patient's resources only",
        )


def _warn_coincident(events: list) -> None:
    """A warning naming both resources when two records give the same observable, route or
    input at the same instant (a duplicated export, or replicates the user should know of)."""
    first: dict[tuple, tuple] = {}
    for e in events:
        key = (e[0], e[1], e[2])
        if key in first:
            other = first[key]
            same = "the same value" if (other[3], other[4]) == (e[3], e[4]) else "different values"
            warnings.warn(
                f"{e[6]} and {other[6].rsplit(': ', 1)[-1]}: two {e[1]} records of {e[2]!r} at the same "
                f"time with {same}; both are read (remove one if it is a duplicate)",
                FhirWarning,
                stacklevel=4,
            )
        else:
            first[key] = e


def _route(dosage: Any, mapping: FhirMapping, where: str) -> str:
    """The route name of a ``Dosage`` (administration or instruction), by the mapping."""
    route = mapping.name_of(_coding(_get(dosage, "route", dict, where), f"{where}.route"), "routes")
    if route is None:
        raise _fail(
            f"{where}.route",
            "no mapped code; add it to the mapping's routes ([patient.fhir.routes])",
        )
    return route


AGE_CAP = 90
"""Ages above 89 are read as 90 (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C))."""


def _demographics(res: dict, where: str) -> dict[str, Any]:
    """``birthDate`` (the latest date it allows: ``1961`` -> 1961-12-31) and ``gender`` of a
    Patient; they become the covariates ``age`` and ``female``, never outputs themselves."""
    out: dict[str, Any] = {}
    birth = _get(res, "birthDate", str, where, required=False)
    if birth is not None:
        parts = birth.split("-")
        try:
            year = int(parts[0])
            month = int(parts[1]) if len(parts) > 1 else 12
            day = int(parts[2]) if len(parts) > 2 else calendar.monthrange(year, month)[1]
            out["birth"] = date(year, month, day)
        except (ValueError, IndexError):
            raise _fail(f"{where}.birthDate", "not a date (YYYY, YYYY-MM or YYYY-MM-DD)") from None
    gender = res.get("gender")
    if gender in ("female", "male"):
        out["female"] = 1.0 if gender == "female" else 0.0
    return out


def _demographic_rows(demo: dict[str, Any], origin: datetime, covs: dict) -> list[tuple]:
    """Covariate rows ``age`` (whole years at the origin, at most :data:`AGE_CAP`) and ``female``
    (1 or 0) from the Patient resource, unless an Observation already gives them."""
    rows = []
    if "birth" in demo and "age" not in covs:
        born, day = demo["birth"], origin.date()
        age = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
        if age < 0:
            raise PatientDataError("Patient.birthDate: after the first dose; check the bundle")
        rows.append((0.0, "h", "covariate", "age", float(min(age, AGE_CAP)), "a", 0.0))
    if "female" in demo and "female" not in covs:
        rows.append((0.0, "h", "covariate", "female", demo["female"], "1", 0.0))
    return rows


def _events(bundle: Any, mapping: FhirMapping, source: str) -> tuple[str, list, dict, dict]:
    """(patient id, timed events, covariates, demographics) from the bundle's entries."""
    patients, events, covariates, demo = set(), [], {}, {}
    for kind, res, where in _resources(bundle, source):
        if kind == "Patient":
            patients.add(str(_get(res, "id", str, where)))
            demo = _demographics(res, where)
        elif kind == "Observation":
            event = _observation(res, mapping, where)
            if event is None:  # another kind of observation: not this study's
                continue
            if event[1] == "covariate":
                covariates.setdefault(event[2], []).append((event[0], *event[3:5], where))
            else:
                events.append(event)
        elif kind == "MedicationAdministration":
            if not _is_the_drug(res, mapping, where):
                continue
            dosage = _get(res, "dosage", dict, where)
            route = _route(dosage, mapping, f"{where}.dosage")
            amount, unit = _quantity(
                _get(dosage, "dose", dict, f"{where}.dosage"), f"{where}.dosage.dose"
            )
            t, seconds = _when(res, where)
            events.append((t, "dose", route, amount, unit, seconds / 3600.0, where))
    if len(patients) > 1:
        raise _fail(
            source, f"the bundle holds {len(patients)} Patient resources; give one patient's bundle"
        )
    return (patients.pop() if patients else ""), events, covariates, demo


def bundle_rows(
    bundle: str | Path | Mapping, mapping: FhirMapping | None = None, origin: str | None = None
) -> tuple[list[tuple], str, str]:
    """The rows of a :class:`~twinbayes.inputs.patient.Patient` (as :meth:`Patient.from_rows` takes
    them), its identifier and the source's name, from a FHIR R4 Bundle (a file or a parsed dict).

    Observations and doses are timed in hours since ``origin`` (an ISO 8601 date-time with a
    zone), by default the first dose, or the first event without doses.  A covariate takes
    its last value at or before the origin (else its first).
    """
    mapping = mapping or FhirMapping()
    source, doc = _load(bundle)
    pid, events, covs, demo = _events(doc, mapping, source)
    _warn_coincident(events)
    if not any(e[1] == "observation" for e in events):
        raise _fail(
            source, "no Observation with a mapped code and a valueQuantity; check the mapping"
        )
    doses = [e[0] for e in events if e[1] == "dose"]
    if origin is not None:
        origin = _instant(origin, "origin")
    else:
        origin = min(doses) if doses else min(e[0] for e in events)
    events.sort(key=lambda e: (e[0], e[1] != "observation"))
    rows = [
        ((t - origin).total_seconds() / 3600.0, "h", kind, name, v, unit, dur)
        for t, kind, name, v, unit, dur, _ in events
    ]
    covariate_rows = []
    for name, values in covs.items():
        before = [c for c in values if c[0] <= origin] or sorted(values, key=lambda c: c[0])[:1]
        _, v, unit, _ = max(before, key=lambda c: c[0])
        covariate_rows.append((0.0, "h", "covariate", name, v, unit, 0.0))
    rows = covariate_rows + _demographic_rows(demo, origin, covs) + rows
    return rows, pid, source


def read_requests(
    bundle: str | Path | Mapping, mapping: FhirMapping | None = None
) -> list[Scenario]:
    """Dosing scenarios from the bundle's ``MedicationRequest`` dosage instructions.

    Each ``dosageInstruction`` becomes a regimen from time 0 (as a study's ``[[scenarios]]``):
    ``doseAndRate[0].doseQuantity`` every ``timing.repeat.period / frequency`` (``periodUnit``
    a UCUM time), ``count`` doses or as many as start within ``boundsDuration``; a
    ``timing.repeat.duration`` makes them infusions.  Only the study drug's requests count when
    ``mapping.medications`` is set.  Names say the regimen (``"request: 320 mg q12h x6"``).

    Raises
    ------
    PatientDataError
        Naming the resource and field, e.g. an open-ended request without count or bounds.
    """
    mapping = mapping or FhirMapping()
    source, doc = _load(bundle)
    scenarios: list[Scenario] = []
    for kind, res, where in _resources(doc, source):
        if kind != "MedicationRequest" or not _is_the_drug(res, mapping, where):
            continue
        for j, dosage in enumerate(_get(res, "dosageInstruction", list, where)):
            scenarios.append(_regimen(dosage, mapping, f"{where}.dosageInstruction[{j}]"))
    names = [s.name for s in scenarios]
    return [
        Scenario(f"{s.name} ({names[:i].count(s.name) + 1})", s.doses, s.time_unit)
        if names.count(s.name) > 1
        else s
        for i, s in enumerate(scenarios)
    ]


def _hours(value: Any, unit: Any, where: str) -> float:
    """A FHIR ``Timing`` value with its UCUM time unit (``h``, ``d``, ``wk``...), in hours."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _fail(where, f"must be a positive number, got {value!r}")
    try:
        hours = float(value) * conversion_factor(str(unit), "h")
    except UnitError as exc:
        raise _fail(where, f"unit {unit!r} is not a time ({exc})") from None
    except OverflowError:
        hours = math.inf
    if not math.isfinite(hours):
        raise _fail(where, f"{value!r} {unit} is too long a time; give a regimen's real length")
    return hours


def _regimen(dosage: Any, mapping: FhirMapping, where: str) -> Scenario:
    """One ``Dosage`` of a request -> a :class:`~twinbayes.spec.scenarios.Scenario` (hours)."""
    route = _route(dosage, mapping, where)
    dose_rates = _get(dosage, "doseAndRate", list, where)
    if not dose_rates:
        raise _fail(where, "doseAndRate is empty; give doseAndRate[0].doseQuantity")
    amount, unit = _quantity(
        _get(dose_rates[0], "doseQuantity", dict, f"{where}.doseAndRate[0]"),
        f"{where}.doseAndRate[0].doseQuantity",
    )
    try:
        parse_unit(unit)
    except UnitError as exc:
        raise _fail(f"{where}.doseAndRate[0].doseQuantity", str(exc)) from None
    rep = _get(_get(dosage, "timing", dict, where), "repeat", dict, f"{where}.timing")
    here = f"{where}.timing.repeat"
    frequency = _get(rep, "frequency", int, here, required=False)
    if frequency is None:
        frequency = 1
    elif frequency < 1:
        raise _fail(f"{here}.frequency", f"must be a positive whole number, got {frequency}")
    interval = (
        _hours(_get(rep, "period", (int, float), here), rep.get("periodUnit"), f"{here}.period")
        / frequency
    )
    if "count" in rep:
        n = _get(rep, "count", int, here)
    elif "boundsDuration" in rep:
        bounds = _get(rep, "boundsDuration", dict, here)
        span = _hours(
            bounds.get("value"), bounds.get("code") or bounds.get("unit"), f"{here}.boundsDuration"
        )
        n = int(span / interval + 1e-9)
    else:
        raise _fail(
            here, "no count or boundsDuration: a scenario needs a finite regimen; add count"
        )
    if not 1 <= n <= MAX_DOSES:
        raise _fail(here, f"{n} doses; a scenario takes 1 to {MAX_DOSES}")
    duration = (
        _hours(rep["duration"], rep.get("durationUnit"), f"{here}.duration")
        if "duration" in rep
        else 0.0
    )
    name = f"request: {amount:g} {unit} q{interval:g}h x{n}" + (
        f", {duration:g} h infusions" if duration else ""
    )
    try:
        return Scenario.regimen(
            name, amount, route, interval=interval, n_doses=n, duration=duration, unit=unit
        )
    except ValueError as exc:
        raise _fail(where, str(exc)) from None


def _load(bundle: str | Path | Mapping) -> tuple[str, Any]:
    if isinstance(bundle, Mapping):
        return "<bundle>", bundle
    path = Path(bundle)
    raw = read_file(path, MAX_BUNDLE_BYTES, PatientDataError)
    try:
        return str(path), json.loads(raw)
    except ValueError as exc:  # not JSON, not UTF-8, an integer of more than 4300 digits
        raise PatientDataError(f"{path}: not a JSON file ({exc})") from None
    except RecursionError:
        raise PatientDataError(f"{path}: JSON nested too deeply") from None


def to_bundle(
    patient: Patient,
    mapping: FhirMapping | None = None,
    start: str = "2024-01-01T08:00:00+00:00",
    *,
    requests: list[Scenario] = (),
    medication: tuple[str, str] | None = None,
    patient_id: str | None = None,
) -> dict:
    """A FHIR R4 collection Bundle of ``patient`` (for exchange and tests), times from ``start``.

    The Patient resource carries the pseudonymous key (:attr:`Patient.label`) as its id, or
    ``patient_id``.  ``requests`` (regular regimens) become MedicationRequests;
    ``medication`` (``(system, code)``) codes every administration and request.
    """
    mapping = mapping or FhirMapping()
    t0 = datetime.fromisoformat(start)
    pid = patient_id or patient.label or "patient"
    entries = [{"resource": {"resourceType": "Patient", "id": pid}}]
    drug = (
        {
            "medicationCodeableConcept": {
                "coding": [{"system": medication[0], "code": medication[1]}]
            }
        }
        if medication
        else {}
    )

    def at(hours: float) -> str:
        return (t0 + timedelta(hours=hours)).astimezone(UTC).isoformat()

    hours = conversion_factor(patient.time_unit, "h")
    for k, (t, _, event, name, v, unit, dur) in enumerate(patient.rows()):
        rid = f"{event}-{k}"
        t, dur = t * hours, dur * hours
        if event in ("observation", "covariate", "input"):
            if event == "input":
                system, code = LOCAL_INPUT, name
            else:
                system, code = mapping.code_of(
                    name, "observations" if event == "observation" else "covariates"
                )
            entries.append({"resource": {
                "resourceType": "Observation", "id": rid, "status": "final",
                "code": {"coding": [{"system": system, "code": code}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": at(t),
                "valueQuantity": {"value": v, "unit": unit, "system": UCUM, "code": unit},
            }})  # fmt: skip
        elif event == "dose":
            system, code = mapping.code_of(name, "routes")
            when = (
                {"effectivePeriod": {"start": at(t), "end": at(t + dur)}}
                if dur
                else {"effectiveDateTime": at(t)}
            )
            entries.append({"resource": {
                "resourceType": "MedicationAdministration", "id": rid, "status": "completed",
                "subject": {"reference": f"Patient/{pid}"}, **when, **drug,
                "dosage": {"route": {"coding": [{"system": system, "code": code}]},
                           "dose": {"value": v, "unit": unit, "system": UCUM, "code": unit}},
            }})  # fmt: skip
    for k, scenario in enumerate(requests):
        entries.append({"resource": {
            "resourceType": "MedicationRequest", "id": f"request-{k}", "status": "active",
            "intent": "order", "subject": {"reference": f"Patient/{pid}"}, **drug,
            "dosageInstruction": [_dosage(scenario, mapping)],
        }})  # fmt: skip
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _dosage(scenario: Scenario, mapping: FhirMapping) -> dict:
    """A FHIR ``Dosage`` of a regular regimen (equal doses at equal intervals from 0)."""
    doses = scenario.doses
    first = doses[0]
    hours = conversion_factor(scenario.time_unit, "h")
    interval = (doses[1].time - first.time) * hours if len(doses) > 1 else 24.0
    regular = all(
        (d.amount, d.unit, d.route, d.duration)
        == (first.amount, first.unit, first.route, first.duration)
        and abs(d.time * hours - i * interval) < 1e-9 * max(1.0, interval)
        for i, d in enumerate(doses)
    )
    if not regular:
        raise ValueError(f"scenario {scenario.name!r} is not a regular regimen from time 0")
    system, code = mapping.code_of(first.route, "routes")
    repeat = {"count": len(doses), "frequency": 1, "period": interval, "periodUnit": "h"}
    if first.duration:
        repeat |= {"duration": first.duration * hours, "durationUnit": "h"}
    return {
        "text": scenario.name,
        "timing": {"repeat": repeat},
        "route": {"coding": [{"system": system, "code": code}]},
        "doseAndRate": [{"doseQuantity": {
            "value": first.amount, "unit": first.unit, "system": UCUM, "code": first.unit,
        }}],
    }  # fmt: skip
