"""Builds the bundled FHIR R4 example bundle ``twinbayes/data/theophylline_1.fhir.json``.

Theophylline subject 1 (``theophylline.csv``; Boeckmann, Sheiner & Beal 1994) as a clinical
system would export it: the Patient (id only), body weight and the dose (mg/kg) as
Observations, the oral dose as a MedicationAdministration coded with theophylline's ATC code,
the plasma levels as LOINC 4049-3 Observations, and two MedicationRequests (the regimens of
the bundled example study) that a study reads as scenarios.  ``tests/test_fhir.py`` checks
that the file is what this script writes.

Run: ``python scripts/make_fhir_examples.py``
"""

from __future__ import annotations

import json
from pathlib import Path

from twinbayes import Patient
from twinbayes.fhir import to_bundle
from twinbayes.scenarios import Scenario

ATC = ("http://www.whocc.no/atc", "R03DA04")  # theophylline
TARGET = Path(__file__).resolve().parents[1] / "twinbayes" / "data" / "theophylline_1.fhir.json"


def example_bundle() -> dict:
    """The bundle of subject 1 with the example study's two regimens as MedicationRequests."""
    patient = Patient.from_csv("bundled:theophylline.csv", subject="1")
    requests = [
        Scenario.regimen("320 mg q12h", 320, "oral", interval=12, n_doses=6),
        Scenario.regimen("160 mg q6h", 160, "oral", interval=6, n_doses=12),
    ]
    return to_bundle(
        patient,
        start="2024-03-04T08:00:00+01:00",
        requests=requests,
        medication=ATC,
        patient_id="theophylline-1",
    )


def main() -> None:
    TARGET.write_text(json.dumps(example_bundle(), indent=1) + "\n")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
