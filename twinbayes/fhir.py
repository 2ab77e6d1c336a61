"""Patient data from HL7 FHIR R4 bundles (JSON), with privacy by default.

:func:`read_bundle` turns a FHIR R4 ``Bundle`` into a :class:`~twinbayes.patient.Patient`:

* ``Observation`` with a LOINC (or other) code, ``valueQuantity`` (value and UCUM code)
  and ``effectiveDateTime`` (or ``effectivePeriod.start``) -> an observation, or a covariate
  for the codes mapped to covariates (body weight, height, serum creatinine, ...);
* ``MedicationAdministration`` with ``dosage.dose`` and ``dosage.route`` ->
  a dose; an ``effectivePeriod`` with a start and an end makes it an infusion over that time;
* ``Patient`` -> the identifier of the data (its ``id``), shown only as the pseudonymous key
  (:mod:`twinbayes.privacy`).  Names, other identifiers (MRN), addresses, telecoms and the
  birth date are never read into the patient.

A :class:`FhirMapping` says which code feeds which observable, covariate or route; the
defaults cover common LOINC codes and SNOMED CT routes.  Times become hours since the first
dose (or the first event, without doses), with time zones honoured; a date without a time or
a time without a zone is refused.  Every problem is a
:class:`~twinbayes.patient.PatientDataError` naming the resource (``Observation/obs-17``), the
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

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .patient import Patient, PatientDataError
from .units import conversion_factor

__all__ = ["FhirMapping", "read_bundle", "to_bundle", "MAX_BUNDLE_BYTES"]

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


def _events(bundle: Any, mapping: FhirMapping, source: str) -> tuple[str, list, dict]:
    """(patient id, timed events, covariates) from the bundle's entries."""
    if _get(bundle, "resourceType", str, source) != "Bundle":
        raise _fail(source, f"resourceType is {bundle['resourceType']!r}; expected a FHIR Bundle")
    patients, events, covariates = set(), [], {}
    for i, entry in enumerate(_get(bundle, "entry", list, source)):
        res = _get(entry, "resource", dict, f"{source}: entry[{i}]")
        kind = _get(res, "resourceType", str, f"{source}: entry[{i}].resource")
        where = f"{source}: {kind}/{res.get('id', f'entry[{i}]')}"
        if res.get("status") in ("entered-in-error", "cancelled", "not-done"):
            continue
        if kind == "Patient":
            patients.add(str(_get(res, "id", str, where)))
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
            route = mapping.name_of(
                _coding(_get(dosage, "route", dict, f"{where}.dosage"), f"{where}.dosage.route"),
                "routes",
            )
            if route is None:
                raise _fail(
                    where, "dosage.route has no mapped code; add it to the mapping's routes"
                )
            amount, unit = _quantity(
                _get(dosage, "dose", dict, f"{where}.dosage"), f"{where}.dosage.dose"
            )
            t, seconds = _when(res, where)
            events.append((t, "dose", route, amount, unit, seconds / 3600.0, where))
    if len(patients) > 1:
        raise _fail(
            source, f"the bundle holds {len(patients)} Patient resources; give one patient's bundle"
        )
    return (patients.pop() if patients else ""), events, covariates


def read_bundle(
    bundle: str | Path | Mapping, mapping: FhirMapping | None = None, origin: str | None = None
) -> Patient:
    """A :class:`~twinbayes.patient.Patient` from a FHIR R4 Bundle (a file or a parsed dict).

    Observations and doses are timed in hours since ``origin`` (an ISO 8601 date-time with a
    zone), by default the first dose, or the first event without doses.  A covariate takes
    its last value at or before the origin (else its first).
    """
    mapping = mapping or FhirMapping()
    source, doc = _load(bundle)
    pid, events, covs = _events(doc, mapping, source)
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
    rows = covariate_rows + rows
    return Patient.from_rows(rows, subject=pid, source=source)  # validated as a CSV file would be


def _load(bundle: str | Path | Mapping) -> tuple[str, Any]:
    if isinstance(bundle, Mapping):
        return "<bundle>", bundle
    path = Path(bundle)
    try:
        size = path.stat().st_size
    except (FileNotFoundError, OSError):
        raise PatientDataError(f"{path}: file not found") from None
    if size > MAX_BUNDLE_BYTES:
        raise PatientDataError(
            f"{path}: {size / 1e6:.0f} MB is more than one patient's record ({MAX_BUNDLE_BYTES / 1e6:.0f} MB at most)"
        )
    try:
        return str(path), json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PatientDataError(f"{path}: not a JSON file ({exc})") from None
    except RecursionError:
        raise PatientDataError(f"{path}: JSON nested too deeply") from None


def to_bundle(
    patient: Patient, mapping: FhirMapping | None = None, start: str = "2024-01-01T08:00:00+00:00"
) -> dict:
    """A FHIR R4 collection Bundle of ``patient`` (for exchange and tests), times from ``start``.

    The Patient resource carries the pseudonymous key (:attr:`Patient.label`) as its id.
    """
    mapping = mapping or FhirMapping()
    t0 = datetime.fromisoformat(start)
    pid = patient.label or "patient"
    entries = [{"resource": {"resourceType": "Patient", "id": pid}}]

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
                "subject": {"reference": f"Patient/{pid}"}, **when,
                "dosage": {"route": {"coding": [{"system": system, "code": code}]},
                           "dose": {"value": v, "unit": unit, "system": UCUM, "code": unit}},
            }})  # fmt: skip
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}
