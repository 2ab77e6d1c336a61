"""FHIR R4 bundles: round trip of the bundled patients, time zones, clear errors on malformed
bundles (fuzzed), and no identifier of the bundle in any output of a study."""

import copy
import json

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinbayes import Patient
from twinbayes.inputs.fhir import read_bundle, to_bundle
from twinbayes.inputs.patient import PatientDataError
from twinbayes.inputs.units import conversion_factor
from twinbayes.run.cli import main

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
        (lambda b: b["entry"][0]["resource"]["dosage"]["route"]["coding"][0].update(code="1"), "dosage.route: no mapped code"),
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


def test_a_study_from_a_bundle_writes_no_identifier_anywhere(tmp_path, leaks):
    """A study reads a bundle with its own mapping (a local lab code, the drug filter) and its
    MedicationRequests as scenarios; no identifier of the bundle reaches any output file, and
    the results folder's study copy keeps the requested scenarios for later updates."""
    from twinbayes.inputs.privacy import pseudonym
    from twinbayes.run.updates import load_results
    from twinbayes.spec.scenarios import Scenario

    patient = Patient.from_csv("bundled:theophylline.csv", subject="1")
    regimen = Scenario.regimen("q12h", 320, "oral", interval=12, n_doses=4)
    bundle = to_bundle(patient, start=START, requests=[regimen], medication=ATC)
    bundle["entry"][0]["resource"] = {
        "resourceType": "Patient", "id": "pt-jane-7",
        "identifier": [{"system": "urn:hospital:mrn", "value": "MRN-778812"}],
        "name": [{"family": "Doe-Example", "given": ["Jane", "Q."], "text": "Jane Q. Doe-Example"}],
        "address": [{"line": ["42 Wallaby Way"], "city": "Sydney"}], "birthDate": "1961-04-12",
    }  # fmt: skip
    for entry in bundle["entry"]:  # the hospital's own code for theophylline levels
        if "subject" in entry["resource"]:  # about this patient (another one's are refused)
            entry["resource"]["subject"] = {"reference": "Patient/pt-jane-7"}
        coding = entry["resource"].get("code", {}).get("coding", [{}])[0]
        if coding.get("code") == "4049-3":
            coding.update(system="urn:hospital:lab", code="THEO")
    (tmp_path / "patient.json").write_text(json.dumps(bundle))
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "fhir_privacy"\nseed = 3\n[patient]\ndata = "patient.json"\n'
        '[patient.fhir]\nmedications = ["http://www.whocc.no/atc|R03DA04"]\n'
        "requests_as_scenarios = true\n"
        '[patient.fhir.observations]\n"urn:hospital:lab|THEO" = "concentration"\n'
        '[twins]\nspecs = ["pk_1cmt_oral", "pk_1cmt_oral_lag"]\n'
        "[predictions]\ntimes = { start = 0, stop = 48, step = 1 }\n"
    )
    out = tmp_path / "out"
    main(["run", str(tmp_path / "study.toml"), "--out", str(out), "--draws", "200", "--tune", "200",
          "--chains", "2", "--quiet", "--no-ladder", "--include-unconverged"])  # fmt: skip
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".nc" for p in files) and (out / "report.html").is_file()
    assert leaks(out, [*IDENTIFIERS, str(tmp_path), "patient.json"]) == []
    ids = np.unique(Patient.from_csv(out / "patient.csv").data.attrs["subject"])
    assert ids.tolist() == [pseudonym("pt-jane-7")]
    with xr.open_dataset(out / "disagreement.nc") as dis:
        assert dis.scenario.values.tolist() == ["request: 320 mg q12h x4"]
    study, _, _ = load_results(out)  # what an update runs: the scenario without the bundle
    assert [(sc.name, [d.time for d in sc.doses]) for sc in study.scenarios] == [
        ("request: 320 mg q12h x4", [0.0, 12.0, 24.0, 36.0])
    ]


ATC = ("http://www.whocc.no/atc", "R03DA04")


def _request(rid="rq1", **repeat):
    return {
        "resourceType": "MedicationRequest", "id": rid, "status": "active", "intent": "order",
        "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 1, "period": 12, "periodUnit": "h", **repeat}},
            "route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]},
            "doseAndRate": [{"doseQuantity": {"value": 250, "code": "mg"}}],
        }],
    }  # fmt: skip


def test_medication_requests_become_scenarios():
    from twinbayes.inputs.fhir import read_requests
    from twinbayes.spec.scenarios import Scenario

    patient = Patient.from_csv("bundled:indometacin.csv", subject="2")
    regimens = [
        Scenario.regimen("a", 25, "iv", interval=8, n_doses=9),
        Scenario.regimen("b", 50, "iv", interval=24, n_doses=3, duration=0.5),
    ]
    back = read_requests(to_bundle(patient, requests=regimens))
    assert [sc.name for sc in back] == [
        "request: 25 mg q8h x9",
        "request: 50 mg q24h x3, 0.5 h infusions",
    ]
    for a, b in zip(regimens, back):
        assert b.doses == a.doses
    # twice a day for three days: 6 doses 12 h apart; boundsDuration in days
    two_a_day = _request(frequency=2, period=1, periodUnit="d",
                         boundsDuration={"value": 3, "code": "d"})  # fmt: skip
    (sc,) = read_requests(_bundle(two_a_day))
    assert [d.time for d in sc.doses] == [0.0, 12.0, 24.0, 36.0, 48.0, 60.0]
    assert {(d.amount, d.unit, d.route) for d in sc.doses} == {(250.0, "mg", "oral")}
    # two identical requests keep distinct names; other drugs' requests are skipped
    other = _request("rq3", count=2) | {
        "medicationCodeableConcept": {"coding": [{"system": ATC[0], "code": "N02BE01"}]}
    }
    names = [
        s.name for s in read_requests(_bundle(_request(count=2), _request("rq2", count=2), other))
    ]
    assert names == [
        "request: 250 mg q12h x2 (1)",
        "request: 250 mg q12h x2 (2)",
        "request: 250 mg q12h x2 (3)",
    ]
    from twinbayes.inputs.fhir import FhirMapping

    only = FhirMapping(medications=frozenset({ATC}))
    assert read_requests(_bundle(_request(count=2), other), only) == []


@pytest.mark.parametrize(
    ("repeat", "message"),
    [
        (
            {},
            r"MedicationRequest/rq1.dosageInstruction\[0\].timing.repeat: no count or boundsDuration",
        ),
        ({"count": 3, "periodUnit": "mg"}, r"timing.repeat.period: unit 'mg' is not a time"),
        ({"count": 3, "period": -1}, r"timing.repeat.period: must be a positive number"),
        ({"count": 0}, r"0 doses; a scenario takes 1 to"),
        ({"count": 2, "frequency": 0}, r"timing.repeat.frequency: must be a positive whole number"),
        ({"count": 2, "duration": 13, "durationUnit": "h"}, r"infusion duration 13.* exceeds"),
    ],
)
def test_bad_medication_requests_name_the_resource_and_field(repeat, message):
    from twinbayes.inputs.fhir import read_requests

    with pytest.raises(PatientDataError, match=message):
        read_requests(_bundle(_request(**repeat)))


def test_a_study_maps_codes_with_fhir_tokens_and_names_bad_ones(tmp_path):
    from twinbayes.run.study import load_study
    from twinbayes.spec.model_spec import SpecError

    def study(fhir: str) -> str:
        return (
            '[study]\nname = "s"\nseed = 1\n[patient]\ndata = "bundled:theophylline_1.fhir.json"\n'
            f'[patient.fhir]\n{fhir}\n[twins]\nspecs = ["pk_1cmt_oral"]\n'
        )

    cases = [
        (
            'observations = { "4049-3" = "concentration" }',
            r"patient.fhir.observations: '4049-3' is not a FHIR token",
        ),
        (
            'routes = { "http://snomed.info/sct|26643006" = "by mouth" }',
            r"the name must be an identifier",
        ),
        ("medications = []", r"patient.fhir.medications: must be a non-empty list"),
        ('colour = "blue"', r"patient.fhir: unknown key"),
        ("requests_as_scenarios = true", r"predictions: scenarios .*need \[predictions\] times"),
    ]
    for i, (fhir, message) in enumerate(cases):
        (tmp_path / f"{i}.toml").write_text(study(fhir))
        with pytest.raises(SpecError, match=message) as err:
            load_study(tmp_path / f"{i}.toml")
        assert str(tmp_path / f"{i}.toml") in str(err.value)
    (tmp_path / "ok.toml").write_text(study('observations = { "urn:lab|T" = "concentration" }'))
    mapping = load_study(tmp_path / "ok.toml").fhir
    assert mapping.observations[("urn:lab", "T")] == "concentration"
    assert mapping.observations[("http://loinc.org", "4049-3")] == "concentration"  # defaults kept


def test_the_bundled_fhir_example_is_subject_1_with_the_example_regimens():
    """``theophylline_1.fhir.json`` is what ``scripts/make_fhir_examples.py`` writes, its study
    reads the same patient as the CSV example and the example's two regimens as scenarios."""
    import runpy
    from pathlib import Path

    from twinbayes.inputs.library import data_path
    from twinbayes.run.study import example_study_path, load_study

    script = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "make_fhir_examples.py"))
    for name, build in script["EXAMPLES"].items():
        assert json.loads(data_path(name).read_text()) == build(), name
    fhir = load_study(example_study_path().with_name("example_fhir.toml"))
    csv = load_study(example_study_path())
    assert _hours(fhir.load_patient()) == _hours(csv.load_patient())
    assert [sc.doses for sc in fhir.scenarios] == [sc.doses for sc in csv.scenarios]
    assert fhir.specs == csv.specs and fhir.qois == csv.qois and fhir.seed == csv.seed


def test_other_observations_are_skipped_and_other_drugs_filtered():
    from twinbayes.inputs.fhir import FhirMapping

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


def test_age_and_sex_become_covariates_and_the_birth_date_stays_out():
    def patient(**fields):
        person = {"resourceType": "Patient", "id": "x", **fields}
        return read_bundle(_bundle(person, _dose("d1", "2024-03-01T08:00:00Z"),
                                   _obs("o1", "2024-03-01T10:00:00Z", 4.1)))  # fmt: skip

    p = patient(birthDate="1961-04-12", gender="female")
    assert p.covariate("age", "a") == 62.0 and p.covariate("female", "1") == 1.0
    assert "1961" not in repr(p.rows()) + repr(p.data.attrs)
    assert patient(birthDate="1961-03-01").covariate("age", "a") == 63.0  # birthday passed
    assert (
        patient(birthDate="1961").covariate("age", "a") == 62.0
    )  # latest date allowed: 1961-12-31
    assert patient(birthDate="1920-01-01").covariate("age", "a") == 90.0  # HIPAA: 90 and over
    assert patient(gender="male").covariate("female", "1") == 0.0
    assert "covariate_female" not in patient(gender="unknown").data
    with pytest.raises(PatientDataError, match=r"Patient/entry\[0\].birthDate: not a date") as err:
        patient(birthDate="12/04/1961")
    assert "1961" not in str(err.value)  # the message echoes neither the birth date
    assert "Patient/x" not in str(err.value)  # nor the patient's identifier


def test_duplicated_and_contradictory_resources_are_named():
    from twinbayes.inputs.fhir import FhirWarning

    dose, o1 = _dose("d1", "2024-03-01T08:00:00Z"), _obs("o1", "2024-03-01T10:00:00Z", 4.1)
    with pytest.warns(FhirWarning, match=r"Observation/o1 appears twice \(identical copies\)"):
        p = read_bundle(_bundle(dose, o1, copy.deepcopy(o1)))
    assert p.observations("concentration", "mg/L", "h")[1].tolist() == [4.1]
    twice = _dose("d1", "2024-03-01T08:00:00Z", amount=100.0)
    with pytest.raises(
        PatientDataError, match=r"MedicationAdministration/d1: appears twice with different"
    ):
        read_bundle(_bundle(dose, twice, o1))
    with pytest.warns(
        FhirWarning, match=r"Observation/o2 and Observation/o1: two observation records"
    ):
        p = read_bundle(_bundle(dose, o1, _obs("o2", "2024-03-01T10:00:00Z", 5.0)))
    assert p.observations("concentration", "mg/L", "h")[1].tolist() == [4.1, 5.0]


def test_the_ivgtt_bundle_in_mmol_per_litre_gives_the_glucose_twins_their_mg_per_dl():
    """Glucose reported by amount (LOINC 14749-6, mmol/L, 4 decimals) reaches the minimal model
    in mg/dL through the spec's molar mass: the CSV's values within the rounding (< 3e-5)."""
    from twinbayes import load_spec
    from twinbayes.dynamics.design import design_for
    from twinbayes.inputs.library import spec_path

    spec = load_spec(spec_path("glucose_minimal"))
    csv = design_for(spec, Patient.from_csv("bundled:ivgtt_pacini_bergman_1986.csv"))
    fhir = design_for(spec, Patient.from_fhir("bundled:ivgtt_pacini_bergman_1986.fhir.json"))
    np.testing.assert_allclose(fhir.times["glucose"], csv.times["glucose"], rtol=1e-12)
    np.testing.assert_allclose(fhir.values["glucose"], csv.values["glucose"], rtol=3e-5)
    assert not np.array_equal(fhir.values["glucose"], csv.values["glucose"])  # really converted
    for a, b in zip(fhir.inputs["I"], csv.inputs["I"]):  # insulin in u[IU]/mL drives the model
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_patient_from_fhir_reads_the_bundled_example():
    p = Patient.from_fhir("bundled:theophylline_1.fhir.json")
    assert _hours(p) == _hours(Patient.from_csv("bundled:theophylline.csv", subject="1"))
