"""Study files (``study.toml``): everything a reproducible twin comparison needs.

A study names the patient data, the twins (specs), sampler settings and the
seed, the comparison, and optionally dosing scenarios, quantities of interest
and targets.  ``twinbayes run STUDY`` runs it; the bundled example is
``twinbayes/studies/example.toml``.  Paths are relative to the study file;
``bundled:NAME`` names a data file shipped with twinbayes.  Errors name the
file and the field, as for spec files.  See ``docs/study-format.md``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..decisions.forward import FORWARD_MIN_POINTS, WIDEN_LEVEL
from ..error import SpecError
from ..fitting.diagnostics import Gate
from ..fitting.ladder import DEFAULT_LADDER, Ladder, Rung, adaptation_problem
from ..inputs.fhir import FhirMapping
from ..inputs.library import data_path, package_dir, spec_path
from ..inputs.names import check_name
from ..inputs.patient import Patient
from ..spec import qoi as Q
from ..spec.fields import check_keys
from ..spec.model_spec import parse_toml, read_text_file
from ..spec.scenarios import MAX_DOSES, Scenario, SeriesChange

__all__ = ["Study", "load_study", "example_study_path"]

_QOI_KINDS = {
    "value_at": (Q.ValueAt, {"at"}),
    "cmax": (Q.Cmax, {"window"}),
    "tmax": (Q.Tmax, {"window"}),
    "auc": (Q.AUC, {"window"}),
    "time_in_range": (Q.TimeInRange, {"lower", "upper", "window"}),
    "time_above": (Q.TimeAbove, {"threshold", "window"}),
    "time_below": (Q.TimeBelow, {"threshold", "window"}),
    "stays_in_range": (Q.StaysInRange, {"lower", "upper", "window"}),
    "exceeds": (Q.Exceeds, {"threshold", "window"}),
}


def example_study_path() -> Path:
    """The bundled example study."""
    return package_dir() / "studies" / "example.toml"


@dataclass(frozen=True)
class Study:
    """A parsed, validated study file."""

    name: str
    description: str
    seed: int
    data: Path
    subject: str | None
    specs: list[Path]
    sampler: dict[str, Any]
    gate: Gate
    comparison: dict[str, Any]
    ladder: Ladder = DEFAULT_LADDER
    keep_identifiers: bool = False
    fhir: FhirMapping | None = None
    fhir_origin: str | None = None
    requests_as_scenarios: bool = False
    scenarios: list[Scenario] = field(default_factory=list)
    requested: list[Scenario] = field(default_factory=list)
    times: np.ndarray | None = None
    observable: str | None = None
    forward_min_points: int | None = FORWARD_MIN_POINTS
    forward_level: float = WIDEN_LEVEL
    qois: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    source: str = ""
    text: str = field(default="", repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def load_patient(self) -> Patient:
        """The study's patient (CSV, or a FHIR bundle read with the study's mapping and origin)."""
        return Patient.from_file(
            self.data, subject=self.subject, mapping=self.fhir, origin=self.fhir_origin
        )


def _count(raw: dict, key: str, where: str, most: int) -> int:
    """A whole number from 1 to ``most`` (default 1 when absent)."""
    v = raw.get(key, 1)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= most:
        raise SpecError(f"{where}.{key}", f"must be a whole number from 1 to {most}, got {v!r}")
    return v


def _num(raw: dict, key: str, where: str, positive: bool = False) -> float:
    v = raw.get(key)
    if not _finite(v) or (positive and v <= 0):
        raise SpecError(
            f"{where}.{key}", f"must be a {'positive ' if positive else ''}number, got {v!r}"
        )
    return float(v)


def _finite(v: Any) -> bool:
    """A number (not a bool) whose float is finite (an integer of 400 digits is not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _window(raw: dict, where: str) -> tuple[float, float]:
    w = raw.get("window")
    if not (
        isinstance(w, list)
        and len(w) == 2
        and all(isinstance(x, (int, float)) for x in w)
        and w[0] < w[1]
    ):
        raise SpecError(f"{where}.window", f"must be [start, end] with start < end, got {w!r}")
    return float(w[0]), float(w[1])


def _parse_qois(items: list, where: str) -> list:
    made: dict[str, Any] = {}
    for i, raw in enumerate(items):
        w = f"{where}[{i}]"
        if not isinstance(raw, dict) or "kind" not in raw or "name" not in raw:
            raise SpecError(w, "each [[qois]] needs a kind and a name")
        kind, name = raw["kind"], raw["name"]
        if name in made:
            raise SpecError(f"{w}.name", f"QoI name {name!r} is used twice")
        if kind == "custom":
            check_keys(raw, w, {"kind", "name", "expression", "inputs"}, set())
            inputs = raw["inputs"]
            if not isinstance(inputs, dict) or not inputs:
                raise SpecError(
                    f"{w}.inputs",
                    'must map expression symbols to QoI names, e.g. { cmax = "Cmax day 3" }',
                )
            missing = [n for n in inputs.values() if n not in made]
            if missing:
                raise SpecError(
                    f"{w}.inputs", f"unknown QoI(s) {missing}; define them above this one"
                )
            try:
                made[name] = Q.Custom(
                    name, raw["expression"], {sym: made[n] for sym, n in inputs.items()}
                )
            except ValueError as exc:
                raise SpecError(f"{w}.expression", str(exc)) from None
            continue
        if kind not in _QOI_KINDS:
            raise SpecError(
                f"{w}.kind",
                f"unknown QoI kind {kind!r}; choose one of {', '.join([*_QOI_KINDS, 'custom'])}",
            )
        cls, required = _QOI_KINDS[kind]
        check_keys(raw, w, {"kind", "name", *required}, set())
        args = {k: (_window(raw, w) if k == "window" else _num(raw, k, w)) for k in required}
        made[name] = cls(name=name, **args)
    return list(made.values())


def load_study(path: str | Path) -> Study:
    """Read and validate a study file.

    Raises
    ------
    SpecError
        Naming the file, the field and a fix.
    """
    path = Path(path)
    text = read_text_file(path, str(path))
    doc = parse_toml(text, str(path))
    try:
        return _with_requested_scenarios(parse_study(doc, path, text))
    except SpecError as exc:
        raise exc.in_file(str(path)) from None


def _with_requested_scenarios(study: Study) -> Study:
    """With ``[patient.fhir] requests_as_scenarios``: the bundle's MedicationRequest dosages
    as scenarios after the study's own (:func:`twinbayes.inputs.fhir.read_requests`)."""
    if not study.requests_as_scenarios:
        return study
    from ..inputs.fhir import read_requests

    requested = read_requests(study.data, study.fhir)
    if not requested:
        raise SpecError(
            "patient.fhir.requests_as_scenarios",
            f"{study.data.name} holds no MedicationRequest with a dosageInstruction for the study drug",
        )
    if study.times is None:
        raise SpecError(
            "predictions", "scenarios (here from MedicationRequests) need [predictions] times"
        )
    return replace(study, scenarios=[*study.scenarios, *requested], requested=requested)


def _parse_patient(pt: Any, base: Path) -> dict[str, Any]:
    """``[patient]``: data, subject, identifiers opt-in and, for FHIR bundles, ``[patient.fhir]``."""
    check_keys(pt, "patient", {"data"}, {"subject", "keep_identifiers", "fhir"})
    keep = pt.get("keep_identifiers", False)
    if not isinstance(keep, bool):
        raise SpecError("patient.keep_identifiers", f"must be true or false, got {keep!r}")
    data = _resolve(pt["data"], base, "patient.data", data_path)
    out = {
        "data": data,
        "subject": None if pt.get("subject") is None else str(pt["subject"]),
        "keep_identifiers": keep,
    }
    if "fhir" not in pt:
        return out
    fh = dict(pt["fhir"]) if isinstance(pt["fhir"], dict) else pt["fhir"]
    if not isinstance(fh, dict):
        raise SpecError("patient.fhir", "must be a table")
    origin = fh.pop("origin", None)
    requests = fh.pop("requests_as_scenarios", False)
    if not isinstance(requests, bool):
        raise SpecError(
            "patient.fhir.requests_as_scenarios", f"must be true or false, got {requests!r}"
        )
    if origin is not None and not isinstance(origin, str):
        raise SpecError("patient.fhir.origin", "must be an ISO 8601 date-time with a zone, as text")
    try:
        mapping = FhirMapping.from_table(fh)
    except ValueError as exc:
        field_, _, message = str(exc).partition(": ")
        raise SpecError(field_, message) from None
    return out | {"fhir": mapping, "fhir_origin": origin, "requests_as_scenarios": requests}


def _resolve(ref: str, base: Path, where: str, bundled) -> Path:
    if not isinstance(ref, str) or not ref:
        raise SpecError(where, f"must be a path, got {ref!r}")
    if ref.startswith("bundled:"):
        try:
            return bundled(ref.removeprefix("bundled:"))
        except FileNotFoundError as exc:
            raise SpecError(where, str(exc)) from None
    p = (base / ref).resolve()
    if not p.exists():
        raise SpecError(
            where,
            f"{p} does not exist (paths are relative to the study file; bundled files as 'bundled:NAME')",
        )
    return p


def _parse_sampler(raw: dict) -> dict[str, Any]:
    """``[sampler]``: draws, warm-up, chains, target acceptance, sampler."""
    sampler = {
        "draws": 2000,
        "tune": 1000,
        "chains": 4,
        "target_accept": 0.95,
        "sampler": None,
        "adaptation": "diag",
    }
    check_keys(raw, "sampler", set(), set(sampler))
    sampler.update(raw)
    for k, most in (("draws", 100_000), ("tune", 100_000), ("chains", 64)):
        v = sampler[k]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= most:
            raise SpecError(f"sampler.{k}", f"must be a whole number from 1 to {most}, got {v!r}")
    ta = sampler["target_accept"]
    if isinstance(ta, bool) or not isinstance(ta, (int, float)) or not 0 < ta < 1:
        raise SpecError("sampler.target_accept", f"must be a number between 0 and 1, got {ta!r}")
    if sampler["sampler"] not in (None, "nutpie", "pymc"):
        raise SpecError("sampler.sampler", f"choose nutpie or pymc, got {sampler['sampler']!r}")
    if problem := adaptation_problem(sampler["adaptation"], sampler["sampler"]):
        raise SpecError("sampler.adaptation", problem)
    return sampler


def _parse_gate(raw: dict) -> tuple[Gate, Ladder]:
    """``[gate]``: convergence thresholds and the escalation ``ladder`` (a list of rungs; ``[]`` turns it off)."""
    raw = dict(raw)
    rungs = raw.pop("ladder", None)
    check_keys(raw, "gate", set(), set(Gate.__dataclass_fields__))
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
            raise SpecError(f"gate.{k}", f"must be a number >= 0 (no quotes), got {v!r}")
    gate = Gate(**raw)
    if rungs is None:
        return gate, DEFAULT_LADDER
    if not isinstance(rungs, list):
        raise SpecError(
            "gate.ladder",
            "must be a list of rungs, e.g. [{target_accept = 0.99, tune_factor = 2}], or [] for none",
        )
    ladder = []
    for i, rung in enumerate(rungs):
        w = f"gate.ladder[{i}]"
        if not isinstance(rung, dict):
            raise SpecError(w, "must be a table {target_accept, tune_factor, draws_factor}")
        check_keys(rung, w, {"target_accept"}, {"tune_factor", "draws_factor"})
        ta = _num(rung, "target_accept", w, positive=True)
        if not ta < 1.0:
            raise SpecError(f"{w}.target_accept", f"must be in (0, 1), got {ta!r}")
        factors = [
            _num(rung, k, w, positive=True) if k in rung else 1.0
            for k in ("tune_factor", "draws_factor")
        ]
        if min(factors) < 1.0 or max(factors) > 20.0:
            raise SpecError(w, "tune_factor and draws_factor must be between 1 and 20")
        ladder.append(Rung(ta, *factors))
    return gate, Ladder(tuple(ladder))


def _parse_comparison(raw: dict) -> dict[str, Any]:
    """``[comparison]``: weights, exclusions, refits."""
    comparison = {
        "include_unconverged": False,
        "refits": True,
        "max_refits": 10,
        "kfold_k": 10,
        "bma": False,
        "bma_method": "smc",
        "weights": "bayes_stacking",  # as comparison.ranking.DEFAULT_WEIGHTS
        "cv": "loo",
        "lfo_min_points": 3,
        "lfo_horizon": 1,
        "lfo_method": "approx",
    }
    check_keys(raw, "comparison", set(), set(comparison))
    comparison.update(raw)
    for key in ("include_unconverged", "bma", "refits"):
        if not isinstance(comparison[key], bool):
            raise SpecError(
                f"comparison.{key}", f"must be true or false (no quotes), got {comparison[key]!r}"
            )
    for key, low in (("max_refits", 0), ("kfold_k", 2), ("lfo_min_points", 1), ("lfo_horizon", 1)):
        v = comparison[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise SpecError(f"comparison.{key}", f"must be a whole number >= {low}, got {v!r}")
    if not isinstance(comparison["weights"], str) or comparison["weights"] not in (
        "stacking",
        "bayes_stacking",
        "pseudo_bma",
        "bma",
    ):
        raise SpecError("comparison.weights", "choose stacking, bayes_stacking, pseudo_bma or bma")
    if comparison["bma_method"] not in ("smc", "importance"):
        raise SpecError(
            "comparison.bma_method",
            f"choose smc (general) or importance (population-prior twins with few levels), got {comparison['bma_method']!r}",
        )
    for key, choices in (("cv", ("loo", "lfo")), ("lfo_method", ("approx", "exact"))):
        if comparison[key] not in choices:
            raise SpecError(
                f"comparison.{key}", f"choose {' or '.join(choices)}, got {comparison[key]!r}"
            )
    if comparison["weights"] == "bma":
        comparison["bma"] = True
    return comparison


def _parse_scenarios(raw: list) -> list[Scenario]:
    """``[[scenarios]]``: dose regimens and changed forcing series; ``doses = 0`` alone is the
    course without treatment (a comparator: watchful waiting, the natural course)."""
    scenarios = []
    for i, sc in enumerate(raw):
        w = f"scenarios[{i}]"
        check_keys(
            sc,
            w,
            {"name"},
            {
                "route",
                "amount",
                "unit",
                "interval",
                "doses",
                "start",
                "duration",
                "time_unit",
                "series",
            },
        )
        time_unit = _time_unit(sc, w)
        series = _parse_series(sc.get("series", {}), f"{w}.series")
        untreated = sc.get("doses") == 0 and not isinstance(sc.get("doses"), bool)
        if untreated and ({"route", "amount", "interval", "start", "duration", "unit"} & set(sc)):
            raise SpecError(f"{w}.doses", "0 doses (no treatment) takes no route, amount or timing")
        try:
            if ("route" in sc or "amount" in sc or not series) and not untreated:
                check_keys(sc, w, {"route", "amount"}, set(sc))
                regimen = Scenario.regimen(
                    sc["name"],
                    _num(sc, "amount", w, positive=True),
                    sc["route"],
                    interval=_num(sc, "interval", w, positive=True) if "interval" in sc else None,
                    n_doses=_count(sc, "doses", w, MAX_DOSES),
                    start=_num(sc, "start", w) if "start" in sc else 0.0,
                    duration=_num(sc, "duration", w) if "duration" in sc else 0.0,
                    unit=_unit_text(sc, w, "mg") if "unit" in sc else "mg",
                    time_unit=time_unit,
                )
                scenarios.append(replace(regimen, series=series))
            else:
                scenarios.append(Scenario(str(sc["name"]), (), time_unit, series))
        except SpecError:  # already names its field
            raise
        except ValueError as exc:
            raise SpecError(w, str(exc)) from None
    return scenarios


def _time_unit(raw: dict, where: str) -> str:
    """A scenario's ``time_unit`` (default ``h``): a unit of time."""
    from ..inputs.units import UnitError, conversion_factor

    unit = raw.get("time_unit", "h")
    try:
        conversion_factor(str(unit), "h")
    except (UnitError, ValueError):
        raise SpecError(
            f"{where}.time_unit", f"must be a unit of time such as h, min or d, got {unit!r}"
        ) from None
    return str(unit)


def _parse_series(raw: Any, where: str) -> tuple[SeriesChange, ...]:
    """``series.NAME = {scale = ...}`` or ``{times = [...], values = [...], unit = "..."}``."""
    if not isinstance(raw, dict):
        raise SpecError(where, "must be a table: series.insulin = { scale = 0.5 }")
    out = []
    for name, change in raw.items():
        w = f"{where}.{name}"
        if not isinstance(change, dict):
            raise SpecError(
                w, "must be { scale = ... } or { times = [...], values = [...], unit = ... }"
            )
        check_keys(change, w, set(), {"scale", "times", "values", "unit"})
        try:
            out.append(
                SeriesChange(
                    check_name(name, w, "series name"),
                    _num(change, "scale", w) if "scale" in change else 1.0,
                    tuple(_numbers(change, "times", w)),
                    tuple(_numbers(change, "values", w)),
                    _unit_text(change, w),
                )
            )
        except SpecError:  # already names its field
            raise
        except ValueError as exc:
            raise SpecError(w, str(exc)) from None
    return tuple(out)


def _unit_text(raw: dict, where: str, example: str = "uU/mL") -> str:
    """An optional unit string (empty when absent)."""
    unit = raw.get("unit", "")
    if not isinstance(unit, str):
        raise SpecError(
            f"{where}.unit", f'must be a unit in quotes such as "{example}", got {unit!r}'
        )
    return unit


def _numbers(raw: dict, key: str, where: str) -> list[float]:
    """An optional list of finite numbers (empty when absent)."""
    v = raw.get(key, [])
    if not isinstance(v, list) or not all(_finite(x) for x in v):
        raise SpecError(f"{where}.{key}", f"must be a list of numbers, got {v!r}")
    return [float(x) for x in v]


def _parse_forward(pr: dict) -> tuple[int | None, float]:
    """``[predictions] widen_forward`` (default true), ``forward_min_points`` (default 3: the
    levels the first forecast of :mod:`twinbayes.decisions.forward` is made from, ``None`` when off) and
    ``forward_level`` (default 0.05: the test that widens a twin only where its forecasts missed
    by more than it said, :func:`~twinbayes.decisions.forward.widening_threshold`)."""
    widen = pr.get("widen_forward", True)
    if not isinstance(widen, bool):
        raise SpecError("predictions.widen_forward", f"must be true or false, got {widen!r}")
    least = pr.get("forward_min_points", FORWARD_MIN_POINTS)
    if isinstance(least, bool) or not isinstance(least, int) or not 1 <= least <= 1000:
        raise SpecError(
            "predictions.forward_min_points",
            f"must be a whole number from 1 to 1000, got {least!r}",
        )
    level = pr.get("forward_level", WIDEN_LEVEL)
    if not _finite(level) or not 0.0 < float(level) <= 0.5:
        raise SpecError(
            "predictions.forward_level",
            f"must be a number above 0 and at most 0.5 (0.5: every fitted widening applied), got {level!r}",
        )
    return (least if widen else None), float(level)


def _parse_observable(pr: dict) -> str | None:
    """``[predictions] observable``: the observable that scenarios predict and QoIs read."""
    if "observable" not in pr:
        return None
    return check_name(pr["observable"], "predictions.observable", "observable name")


MAX_PREDICTION_TIMES = 20_000
"""Most prediction times (each scenario is simulated at every time for every draw)."""


def _parse_times(pr: dict) -> np.ndarray:
    """``[predictions] times``: ``{start, stop, step}`` or a list (at most
    :data:`MAX_PREDICTION_TIMES`, checked before the grid is made)."""
    check_keys(
        pr,
        "predictions",
        {"times"},
        {"observable", "widen_forward", "forward_min_points", "forward_level"},
    )
    t = pr["times"]
    where = "predictions.times"
    if isinstance(t, dict):
        check_keys(t, where, {"start", "stop", "step"}, set())
        start, stop = _num(t, "start", where), _num(t, "stop", where)
        step = _num(t, "step", where, positive=True)
        if not stop >= start:
            raise SpecError(where, f"stop ({stop:g}) must not be before start ({start:g})")
        n = (stop - start) / step + 1
        if not n <= MAX_PREDICTION_TIMES:
            raise SpecError(
                where,
                f"{n:.3g} times from {start:g} to {stop:g} every {step:g}: more than "
                f"{MAX_PREDICTION_TIMES}; take a larger step",
            )
        times = np.arange(start, stop + 1e-9 * step, step)
    elif isinstance(t, list) and t:
        if len(t) > MAX_PREDICTION_TIMES or not all(_finite(x) for x in t):
            raise SpecError(where, f"must be at most {MAX_PREDICTION_TIMES} finite numbers")
        times = np.array(t, float)
    else:
        raise SpecError(where, "give {start, stop, step} or a list of times")
    return times


def _parse_targets(raw: list, by_name: dict) -> list:
    """``[[targets]]``: bounds on named QoIs."""
    targets = []
    for i, tg in enumerate(raw):
        w = f"targets[{i}]"
        check_keys(tg, w, {"qoi"}, {"lower", "upper", "name"})
        if tg["qoi"] not in by_name:
            raise SpecError(f"{w}.qoi", f"unknown QoI {tg['qoi']!r}; defined: {', '.join(by_name)}")
        try:
            targets.append(
                Q.Target(by_name[tg["qoi"]], tg.get("lower"), tg.get("upper"), tg.get("name", ""))
            )
        except ValueError as exc:
            raise SpecError(w, str(exc)) from None
    return targets


def parse_study(doc: dict, path: Path, text: str) -> Study:
    """A :class:`Study` from a parsed TOML document ``doc`` (read from ``path``; ``text`` kept
    for the results folder's copy); every field checked, errors name the field."""
    check_keys(
        doc,
        "<top level>",
        {"study", "patient", "twins"},
        {"sampler", "gate", "comparison", "scenarios", "predictions", "qois", "targets"},
    )
    base = path.parent
    st = doc["study"]
    check_keys(st, "study", {"name", "seed"}, {"description"})
    if isinstance(st["seed"], bool) or not isinstance(st["seed"], int) or st["seed"] < 0:
        raise SpecError("study.seed", f"must be a non-negative integer, got {st['seed']!r}")
    patient = _parse_patient(doc["patient"], base)
    tw = doc["twins"]
    check_keys(tw, "twins", {"specs"}, set())
    if not isinstance(tw["specs"], list) or not tw["specs"]:
        raise SpecError("twins.specs", "must be a non-empty list of spec files or 'bundled:NAME'")
    specs = [
        _resolve(
            s if str(s).endswith(".toml") or str(s).startswith("bundled:") else f"bundled:{s}",
            base,
            f"twins.specs[{i}]",
            spec_path,
        )
        for i, s in enumerate(tw["specs"])
    ]

    sampler, gate, ladder = (
        _parse_sampler(doc.get("sampler", {})),
        *_parse_gate(doc.get("gate", {})),
    )
    comparison = _parse_comparison(doc.get("comparison", {}))
    scenarios = _parse_scenarios(doc.get("scenarios", []))
    times = _parse_times(doc["predictions"]) if "predictions" in doc else None
    observable = _parse_observable(doc.get("predictions", {}))
    forward_min_points, forward_level = _parse_forward(doc.get("predictions", {}))
    qois = _parse_qois(doc.get("qois", []), "qois")
    targets = _parse_targets(doc.get("targets", []), {q.name: q for q in qois})
    if scenarios and times is None:
        raise SpecError("predictions", "scenarios need [predictions] times")
    return Study(
        name=check_name(st["name"], "study.name", "study name"),
        description=str(st.get("description", "")),
        seed=int(st["seed"]),
        **patient,
        specs=specs,
        sampler=sampler,
        gate=gate,
        ladder=ladder,
        comparison=comparison,
        scenarios=scenarios,
        times=times,
        observable=observable,
        forward_min_points=forward_min_points,
        forward_level=forward_level,
        qois=qois,
        targets=targets,
        source=str(path),
        text=text,
    )
