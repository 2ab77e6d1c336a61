"""Builds the bundled FHIR R4 example bundles in ``twinbayes/data``.

``theophylline_1.fhir.json``:
Theophylline subject 1 (``theophylline.csv``; Boeckmann, Sheiner & Beal 1994) as a clinical
system would export it: the Patient (id only), body weight and the dose (mg/kg) as
Observations, the oral dose as a MedicationAdministration coded with theophylline's ATC code,
the plasma levels as LOINC 4049-3 Observations, and two MedicationRequests (the regimens of
the bundled example study) that a study reads as scenarios.

``ivgtt_pacini_bergman_1986.fhir.json``: the IVGTT of ``ivgtt_pacini_bergman_1986.csv``
(Pacini & Bergman 1986) as a European laboratory reports it: glucose by amount, LOINC 14749-6
in mmol/L (mg/dL / 18.0156, glucose 180.156 g/mol, rounded to 4 decimals), insulin LOINC
20448-7 in the UCUM ``u[IU]/mL``.  The glucose specs state glucose's molar mass and read it in
their mg/dL.

``tests/test_fhir.py`` checks that the files are what this script writes.

Run: ``python scripts/make_fhir_examples.py``
"""

from __future__ import annotations

import json
from pathlib import Path

from twinbayes import Patient
from twinbayes.inputs.fhir import to_bundle
from twinbayes.spec.scenarios import Scenario

ATC = ("http://www.whocc.no/atc", "R03DA04")  # theophylline
DATA = Path(__file__).resolve().parents[1] / "twinbayes" / "data"
MG_PER_DL_PER_MMOL_PER_L = 18.0156  # glucose: 180.156 g/mol


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


def ivgtt_bundle() -> dict:
    """The IVGTT with glucose in mmol/L (LOINC 14749-6) and insulin in u[IU]/mL."""
    patient = Patient.from_csv("bundled:ivgtt_pacini_bergman_1986.csv")
    bundle = to_bundle(patient, start="2024-05-13T09:00:00+02:00", patient_id="ivgtt-1")
    for entry in bundle["entry"]:
        res = entry["resource"]
        coding = res.get("code", {}).get("coding", [{}])[0]
        quantity = res.get("valueQuantity", {})
        if coding.get("code") == "2345-7":
            coding["code"] = "14749-6"  # Glucose [Moles/volume] in Serum or Plasma
            value = round(quantity["value"] / MG_PER_DL_PER_MMOL_PER_L, 4)
            quantity.update(value=value, unit="mmol/L", code="mmol/L")
        elif quantity.get("code") == "uU/mL":
            quantity.update(unit="u[IU]/mL", code="u[IU]/mL")
    return bundle


EXAMPLES = {
    "theophylline_1.fhir.json": example_bundle,
    "ivgtt_pacini_bergman_1986.fhir.json": ivgtt_bundle,
}


def main() -> None:
    for name, build in EXAMPLES.items():
        (DATA / name).write_text(json.dumps(build(), indent=1) + "\n")
        print(f"wrote {DATA / name}")


if __name__ == "__main__":
    main()
