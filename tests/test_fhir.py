"""FHIR R4 bundles: round trip of the bundled patients, time zones, clear errors on malformed
bundles (fuzzed), and no identifier of the bundle in any output of a study."""

import copy
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinbayes import Patient
from twinbayes.cli import main
from twinbayes.fhir import read_bundle, to_bundle
from twinbayes.patient import PatientDataError
from twinbayes.units import conversion_factor

START = "2024-01-01T08:00:00+00:00"
BUNDLED = [
    ("theophylline.csv", "1"),
    ("phenobarbital.csv", "1"),
    ("indometacin.csv", "2"),
    ("ivgtt_pacini_bergman_1986.csv", None),
    ("benzekry_llc_tumor_volume.csv", "3"),
    ("mimicdb041_abp_assumed_inflow.csv", None),
]


def _hours(patient: Patient) -> list[tuple]:
    f = conversion_factor(patient.time_unit, "h")
    return [
        (round(t * f, 9), e, n, v, u, round(d * f, 9)) for t, _, e, n, v, u, d in patient.rows()
    ]


@pytest.mark.parametrize(("file", "subject"), BUNDLED, ids=[b[0] for b in BUNDLED])
def test_each_bundled_patient_survives_a_round_trip_through_fhir(file, subject):
    patient = Patient.from_csv(f"bundled:{file}", subject=subject)
    bundle = json.loads(
        json.dumps(to_bundle(patient, start=START))
    )  # as written to and read from disk
    back = read_bundle(bundle, origin=START)
    assert _hours(back) == _hours(patient)
    assert (
        back.id == patient.label
    )  # the exported bundle carries the pseudonym, never the identifier


def _bundle(*resources):
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }


def _obs(rid, when, value, unit="mg/L", code="4049-3"):
    return {
        "resourceType": "Observation", "id": rid, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "effectiveDateTime": when, "valueQuantity": {"value": value, "code": unit},
    }  # fmt: skip


def _dose(rid, start, end=None, amount=320.0, route="26643006"):
    when = (
        {"effectivePeriod": {"start": start, "end": end}} if end else {"effectiveDateTime": start}
    )
    return {
        "resourceType": "MedicationAdministration", "id": rid, "status": "completed", **when,
        "dosage": {"route": {"coding": [{"system": "http://snomed.info/sct", "code": route}]},
                   "dose": {"value": amount, "code": "mg"}},
    }  # fmt: skip


def test_times_are_hours_since_the_first_dose_across_time_zones():
    bundle = _bundle(
        _dose("d1", "2024-03-01T08:00:00Z"),
        _obs("o1", "2024-03-01T11:30:00+02:00", 4.1),  # 09:30 UTC: 1.5 h after the dose
        _dose("d2", "2024-03-01T20:00:00Z", "2024-03-01T21:00:00Z", route="47625008"),
        _obs("w", "2024-03-01T07:00:00Z", 70.0, unit="kg", code="29463-7"),
    )
    p = read_bundle(bundle)
    assert p.observations("concentration", "mg/L", "h")[0].tolist() == [1.5]
    assert p.doses("iv", "mg", "h")[0].tolist() == [12.0]
    assert p.infusion_durations("iv", "h").tolist() == [1.0]
    assert p.covariate("weight", "kg") == 70.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(resourceType="Patient"), "expected a FHIR Bundle"),
        (lambda b: b["entry"][1]["resource"].update(effectiveDateTime="2024-03-01"), "time of day"),
        (lambda b: b["entry"][1]["resource"].update(effectiveDateTime="2024-03-01T10:00:00"), "no time zone"),
        (lambda b: b["entry"][1]["resource"]["valueQuantity"].pop("value"), "Observation/o1.valueQuantity: value is missing"),
        (lambda b: b["entry"][1]["resource"]["valueQuantity"].update(value="4.1"), "value must be"),
        (lambda b: b["entry"][0]["resource"]["dosage"]["route"]["coding"][0].update(code="1"), "dosage.route has no mapped code"),
        (lambda b: b["entry"].append({"resource": {"resourceType": "Patient", "id": "a"}}) or b["entry"].append({"resource": {"resourceType": "Patient", "id": "b"}}), "2 Patient resources"),
    ],
)  # fmt: skip
def test_bad_bundles_name_the_resource_and_the_field(change, message):
    bundle = _bundle(_dose("d1", "2024-03-01T08:00:00Z"), _obs("o1", "2024-03-01T10:00:00Z", 4.1))
    change(bundle)
    with pytest.raises(PatientDataError, match=message):
        read_bundle(bundle)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
VALID = _bundle(
    {"resourceType": "Patient", "id": "x"},
    _dose("d1", "2024-03-01T08:00:00Z"),
    _obs("o1", "2024-03-01T10:00:00Z", 4.1),
    _obs("o2", "2024-03-01T12:00:00Z", 3.2),
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


PATHS = list(_paths(VALID))[1:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(PATHS), st.one_of(json_values, st.just("__delete__"))), max_size=4
    )
)
def test_malformed_bundles_give_only_twinbayes_errors(mutations):
    bundle = copy.deepcopy(VALID)
    for path, value in mutations:
        node = bundle
        try:
            for key in path[:-1]:
                node = node[key]
            if value == "__delete__":
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    try:
        read_bundle(bundle)
    except PatientDataError:
        pass


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_any_json_document_gives_a_patient_or_a_clear_error(doc):
    try:
        read_bundle(
            {"resourceType": "Bundle", "entry": doc} if isinstance(doc, list) else {"x": doc}
        )
    except PatientDataError:
        pass


def test_patient_check_reads_a_bundle(tmp_path, capsys):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(VALID))
    assert main(["patient", "check", "--fhir", str(path)]) == 0
    out = capsys.readouterr().out
    assert "observations concentration: 2" in out and "'x'" not in out
    (tmp_path / "bad.json").write_text("{")
    assert main(["patient", "check", str(tmp_path / "bad.json")]) == 2
    assert "not a JSON file" in capsys.readouterr().err


IDENTIFIERS = ["Jane Q. Doe-Example", "MRN-778812", "42 Wallaby Way", "1961-04-12", "pt-jane-7"]


def test_a_study_from_a_bundle_writes_no_identifier_anywhere(tmp_path):
    patient = Patient.from_csv("bundled:theophylline.csv", subject="1")
    bundle = to_bundle(patient, start=START)
    bundle["entry"][0]["resource"] = {
        "resourceType": "Patient", "id": "pt-jane-7",
        "identifier": [{"system": "urn:hospital:mrn", "value": "MRN-778812"}],
        "name": [{"family": "Doe-Example", "given": ["Jane", "Q."], "text": "Jane Q. Doe-Example"}],
        "address": [{"line": ["42 Wallaby Way"], "city": "Sydney"}], "birthDate": "1961-04-12",
    }  # fmt: skip
    (tmp_path / "patient.json").write_text(json.dumps(bundle))
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "fhir_privacy"\nseed = 3\n[patient]\ndata = "patient.json"\n'
        '[twins]\nspecs = ["pk_1cmt_oral", "pk_1cmt_oral_lag"]\n'
    )
    out = tmp_path / "out"
    main(["run", str(tmp_path / "study.toml"), "--out", str(out), "--draws", "200", "--tune", "200",
          "--chains", "2", "--quiet", "--no-ladder", "--include-unconverged"])  # fmt: skip
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".nc" for p in files) and (out / "report.html").is_file()
    for p in files:
        data = p.read_bytes()
        for ident in IDENTIFIERS:
            assert ident.encode() not in data, f"{ident!r} in {p.relative_to(out)}"
    ids = np.unique(Patient.from_csv(out / "patient.csv").data.attrs["subject"])
    assert ids.tolist() == [read_bundle(bundle).label]


def test_other_observations_are_skipped_and_other_drugs_filtered():
    from twinbayes.fhir import FhirMapping

    heart_rate = {"resourceType": "Observation", "id": "hr", "status": "final",
                  "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                  "effectiveDateTime": "2024-03-01T09:00:00Z", "valueString": "regular"}  # fmt: skip
    other = _dose("d-other", "2024-03-01T07:00:00Z", amount=1000.0)
    other["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.whocc.no/atc", "code": "N02BE01"}]
    }
    ours = _dose("d1", "2024-03-01T08:00:00Z")
    ours["medicationCodeableConcept"] = {
        "coding": [{"system": "http://www.whocc.no/atc", "code": "R03DA04"}]
    }
    bundle = _bundle(other, ours, heart_rate, _obs("o1", "2024-03-01T10:00:00Z", 4.1))
    everything = read_bundle(bundle)  # default: every administration is the drug
    assert everything.doses("oral", "mg", "h")[1].tolist() == [1000.0, 320.0]
    theophylline = FhirMapping(medications=frozenset({("http://www.whocc.no/atc", "R03DA04")}))
    p = read_bundle(bundle, theophylline)
    assert p.doses("oral", "mg", "h")[1].tolist() == [320.0]
    assert p.observations("concentration", "mg/L", "h")[0].tolist() == [2.0]
