"""Patient data from HL7 FHIR R4 bundles: the public entry points.

:func:`read_bundle` reads one patient's bundle into a :class:`~twinbayes.inputs.patient.Patient`;
:func:`read_requests` reads its MedicationRequests as dosing scenarios; :func:`to_bundle` writes a
patient back as a bundle; :class:`FhirMapping` says which codes mean what.  The reading itself,
its checks and its privacy rules are in :mod:`twinbayes.inputs.fhir_bundle` (which builds rows, not
patients, so that :class:`~twinbayes.inputs.patient.Patient` can read a bundle without a cycle).

References
----------
HL7 FHIR R4 (4.0.1), https://hl7.org/fhir/R4/ (Bundle, Observation, MedicationAdministration).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .fhir_bundle import (
    LOINC,
    MAX_BUNDLE_BYTES,
    SNOMED,
    UCUM,
    FhirMapping,
    FhirWarning,
    bundle_rows,
    read_requests,
    to_bundle,
)
from .patient import Patient

__all__ = [
    "FhirMapping",
    "FhirWarning",
    "read_bundle",
    "read_requests",
    "to_bundle",
    "MAX_BUNDLE_BYTES",
    "LOINC",
    "SNOMED",
    "UCUM",
]


def read_bundle(
    bundle: str | Path | Mapping, mapping: FhirMapping | None = None, origin: str | None = None
) -> Patient:
    """A :class:`~twinbayes.inputs.patient.Patient` from a FHIR R4 Bundle (a file or a parsed dict).

    Observations and doses are timed in hours since ``origin`` (an ISO 8601 date-time with a
    zone), by default the first dose, or the first event without doses.  A covariate takes
    its last value at or before the origin (else its first).  The rows are validated as a CSV
    file's would be (:meth:`Patient.from_rows`).
    """
    rows, subject, source = bundle_rows(bundle, mapping, origin)
    return Patient.from_rows(rows, subject=subject, source=source)
