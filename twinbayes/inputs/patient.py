"""One patient's data: observations, doses and covariates, with units.

The tidy CSV format has one row per event::

    subject,time,time_unit,event,name,value,unit
    1,0,h,dose,oral,320.4,mg
    1,0.25,h,observation,concentration,2.84,mg/L
    1,0,h,covariate,weight,79.6,kg

``subject`` is optional (needed when a file holds several patients);
``event`` is ``observation``, ``dose`` (``name`` is the route, e.g. ``oral`` or
``iv``; an optional ``duration`` column, in the row's time unit, makes a dose a
zero-order infusion of ``value`` over that time, empty or 0 for a bolus),
``input`` (a series that drives a model without being modelled, e.g. an
assumed inflow waveform; see forcing inputs in ``docs/spec-format.md``) or
``covariate``.  Rows of one subject must be in time order.  All
validation errors name the file, the line and the column, and say how to fix
the data.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..error import PatientDataError
from .fhir_bundle import bundle_rows
from .units import UnitError, conversion_factor, parse_unit
from .untrusted import read_file

__all__ = ["PatientDataError", "Patient", "COLUMNS"]

COLUMNS = ("time", "time_unit", "event", "name", "value", "unit")
EVENTS = ("observation", "dose", "input", "covariate")


MAX_BYTES = 20_000_000
"""Largest patient file read (bytes): one patient's data, not a cohort's."""


@dataclass(frozen=True)
class Patient:
    """Observations, doses and covariates of one patient.

    Attributes
    ----------
    data : xarray.Dataset
        Dimensions ``obs`` (variables ``obs_time``, ``obs_name``,
        ``obs_value``, ``obs_unit``) and ``dose`` (``dose_time``,
        ``dose_route``, ``dose_amount``, ``dose_unit``); covariates as
        0-d variables ``covariate_<name>`` with a ``unit`` attribute.  Times
        are in ``data.attrs["time_unit"]``.
    """

    data: xr.Dataset

    # ------------------------------------------------------------------ access
    @property
    def id(self) -> str:
        """The identifier in the data (e.g. the CSV's ``subject``): never written to outputs by default."""
        return str(self.data.attrs.get("subject", ""))

    @property
    def label(self) -> str:
        """What outputs show: a pseudonym (:mod:`twinbayes.inputs.privacy`), or the identifier when the user opted in."""
        if self.data.attrs.get("keep_identifiers"):
            return self.id
        from .privacy import pseudonym

        return pseudonym(self.id)

    def keeping_identifiers(self) -> Patient:
        """This patient with its identifier shown in outputs (an explicit opt-in)."""
        data = self.data.copy()
        data.attrs["keep_identifiers"] = 1
        return type(self)(data)

    @property
    def time_unit(self) -> str:
        return self.data.attrs["time_unit"]

    @property
    def observation_names(self) -> list[str]:
        return list(dict.fromkeys(self.data["obs_name"].values.tolist()))

    @property
    def routes(self) -> list[str]:
        return list(dict.fromkeys(self.data["dose_route"].values.tolist()))

    def observations(
        self, name: str, unit: str, time_unit: str, molar_mass: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Times and values of observable ``name``, converted to the given units.

        ``molar_mass`` (g/mol) converts values given by amount (mmol/L) into mass units
        (mg/dL) and back (:func:`twinbayes.inputs.units.conversion_factor`).
        """
        sel = self.data["obs_name"].values == name
        if not sel.any():
            raise PatientDataError(
                f"patient {self.label!r} has no observations named {name!r}; it has {self.observation_names}"
            )
        t = self.data["obs_time"].values[sel] * conversion_factor(self.time_unit, time_unit)
        units = set(self.data["obs_unit"].values[sel].tolist())
        y = self.data["obs_value"].values[sel].astype(float).copy()
        for u in units:
            try:
                y[self.data["obs_unit"].values[sel] == u] *= conversion_factor(u, unit, molar_mass)
            except UnitError as exc:
                raise PatientDataError(
                    f"observation {name!r} of patient {self.label!r}: {exc}"
                ) from None
        return t, y

    @property
    def input_names(self) -> list[str]:
        return (
            list(dict.fromkeys(self.data["input_name"].values.tolist()))
            if "input_name" in self.data
            else []
        )

    def series(
        self, name: str, unit: str, time_unit: str, molar_mass: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Times and values of the series ``name`` (``input`` rows, else observations), converted.

        Used for forcing inputs: a spec may be driven by a measured series
        (insulin in an IVGTT) or by an assumed one given as ``input`` rows.
        """
        if name not in self.input_names:
            if name not in self.observation_names:
                raise PatientDataError(
                    f"patient {self.label!r} ({self.data.attrs.get('source')}) has no series {name!r} to drive the model; "
                    f"add 'input' or 'observation' rows named {name!r} (it has observations {self.observation_names}, "
                    f"inputs {self.input_names})"
                )
            return self.observations(name, unit, time_unit, molar_mass)
        sel = self.data["input_name"].values == name
        t = self.data["input_time"].values[sel] * conversion_factor(self.time_unit, time_unit)
        v = self.data["input_value"].values[sel].astype(float).copy()
        for u in set(self.data["input_unit"].values[sel].tolist()):
            try:
                v[self.data["input_unit"].values[sel] == u] *= conversion_factor(
                    u, unit, molar_mass
                )
            except UnitError as exc:
                raise PatientDataError(f"input {name!r} of patient {self.label!r}: {exc}") from None
        return t, v

    def doses(
        self, route: str, unit: str, time_unit: str, molar_mass: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Times and amounts of doses given by ``route``, converted to the given units."""
        sel = self.data["dose_route"].values == route
        t = self.data["dose_time"].values[sel] * conversion_factor(self.time_unit, time_unit)
        amt = self.data["dose_amount"].values[sel].astype(float).copy()
        for i, u in enumerate(self.data["dose_unit"].values[sel]):
            try:
                amt[i] *= conversion_factor(u, unit, molar_mass)
            except UnitError as exc:
                raise PatientDataError(f"{route!r} dose of patient {self.label!r}: {exc}") from None
        return t, amt

    def infusion_durations(self, route: str, time_unit: str) -> np.ndarray:
        """Durations of the doses given by ``route`` (0 for a bolus), in ``time_unit``."""
        sel = self.data["dose_route"].values == route
        if "dose_duration" not in self.data:  # data saved before infusions were read
            return np.zeros(int(sel.sum()))
        return self.data["dose_duration"].values[sel] * conversion_factor(self.time_unit, time_unit)

    def covariate(self, name: str, unit: str) -> float:
        var = self.data.get(f"covariate_{name}")
        if var is None:
            raise PatientDataError(f"patient {self.label!r} has no covariate {name!r}")
        return float(var.values) * conversion_factor(var.attrs["unit"], unit)

    @property
    def sha256(self) -> str:
        return self.data.attrs.get("sha256", "")

    def rows(self) -> list[tuple[float, str, str, str, float, str, float]]:
        """Every event as ``(time, time_unit, event, name, value, unit, duration)``, covariates
        first, then in time order (observations before doses and inputs at one time)."""
        d, tu = self.data, self.time_unit
        rows = [
            (
                0.0,
                tu,
                "covariate",
                k.removeprefix("covariate_"),
                float(v.values),
                v.attrs["unit"],
                0.0,
            )
            for k, v in d.data_vars.items()
            if k.startswith("covariate_")
        ]
        events = [
            (float(t), tu, "observation", str(n), float(v), str(u), 0.0)
            for t, n, v, u in zip(
                d.obs_time.values, d.obs_name.values, d.obs_value.values, d.obs_unit.values
            )
        ]
        durations = (
            d["dose_duration"].values if "dose_duration" in d else np.zeros(d.sizes.get("dose", 0))
        )
        events += [
            (float(t), tu, "dose", str(r), float(a), str(u), float(dur))
            for t, r, a, u, dur in zip(
                d.dose_time.values,
                d.dose_route.values,
                d.dose_amount.values,
                d.dose_unit.values,
                durations,
            )
        ]
        if "input_time" in d:
            events += [
                (float(t), tu, "input", str(n), float(v), str(u), 0.0)
                for t, n, v, u in zip(
                    d.input_time.values,
                    d.input_name.values,
                    d.input_value.values,
                    d.input_unit.values,
                )
            ]
        return rows + sorted(
            events, key=lambda r: r[0]
        )  # stable: the data's own order at equal times

    def write_csv(self, path: str | Path, subject: str | None = None) -> Path:
        """Write the tidy CSV this patient reads back from (``subject`` column: ``subject``, default :attr:`label`).

        Values are written with ``repr`` (shortest round-trip form), so ``from_csv`` gives the same numbers.
        """
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(("subject", *COLUMNS, "duration"))
            for t, tu, event, name, v, unit, dur in self.rows():
                w.writerow(
                    (
                        self.label if subject is None else subject,
                        repr(t),
                        tu,
                        event,
                        name,
                        repr(v),
                        unit,
                        repr(dur) if dur else "",
                    )
                )
        return path

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return (
            f"Patient({self.label!r}, {self.data.sizes.get('obs', 0)} observations of "
            f"{self.observation_names}, {self.data.sizes.get('dose', 0)} doses via {self.routes})"
        )

    # ---------------------------------------------------------------- building
    @classmethod
    def from_records(
        cls,
        observations: list[tuple[float, str, float, str]],
        doses: list[tuple[float, str, float, str]] = (),
        covariates: dict[str, tuple[float, str]] | None = None,
        inputs: list[tuple[float, str, float, str]] = (),
        *,
        time_unit: str = "h",
        subject: str = "",
        source: str = "<records>",
    ) -> Patient:
        """Build a patient from Python records and validate it.

        Parameters
        ----------
        observations : list of (time, name, value, unit)
        doses : list of (time, route, amount, unit) or (time, route, amount, unit, duration)
            A duration > 0 (in ``time_unit``) makes the dose a zero-order infusion.
        covariates : dict name -> (value, unit)
        inputs : list of (time, name, value, unit)
            Forcing series (``input`` rows).
        """
        rows = [(float(t), time_unit, "observation", n, float(v), u) for t, n, v, u in observations]
        rows += [(float(d[0]), time_unit, "dose", d[1], float(d[2]), d[3], *d[4:5]) for d in doses]
        rows += [(float(t), time_unit, "input", n, float(v), u) for t, n, v, u in inputs]
        rows += [
            (0.0, time_unit, "covariate", n, float(v), u)
            for n, (v, u) in (covariates or {}).items()
        ]
        rows.sort(key=lambda r: r[0])
        return build_patient(rows, list(range(1, len(rows) + 1)), subject, source, sha="")

    @classmethod
    def from_file(cls, path: str | Path, subject: str | int | None = None, **fhir: Any) -> Patient:
        """A tidy CSV (:meth:`from_csv`) or, for ``.json``, a FHIR R4 Bundle (:func:`twinbayes.inputs.fhir.read_bundle`).

        A bundle holds one patient; ``subject``, when given, must be its Patient id.
        ``fhir`` keywords (``mapping``, ``origin``) go to :func:`~twinbayes.inputs.fhir.read_bundle`.
        """
        if str(path).lower().endswith(".json"):
            patient = cls.from_fhir(path, **fhir)
            if subject is not None and str(subject) != patient.id:
                raise PatientDataError(f"{path}: the bundle's patient is not subject {subject!r}")
            return patient
        return cls.from_csv(path, subject=subject)

    @classmethod
    def from_fhir(cls, bundle: Any, mapping: Any = None, origin: str | None = None) -> Patient:
        """A patient from a FHIR R4 Bundle (a path, ``bundled:NAME`` or a parsed dict):
        :func:`twinbayes.inputs.fhir.read_bundle` with a :class:`~twinbayes.inputs.fhir.FhirMapping`."""
        if isinstance(bundle, (str, Path)):
            bundle = resolve_data_path(bundle)
        rows, subject, source = bundle_rows(bundle, mapping, origin)
        return cls.from_rows(rows, subject=subject, source=source)  # validated as a CSV would be

    @classmethod
    def from_rows(cls, rows: list[tuple], *, subject: str = "", source: str = "<rows>") -> Patient:
        """Build a patient from rows ``(time, time_unit, event, name, value, unit, duration)``,
        validated as the rows of a CSV file (errors name the row number)."""
        sha = hashlib.sha256(repr(rows).encode()).hexdigest()
        return build_patient(list(rows), list(range(1, len(rows) + 1)), subject, source, sha=sha)

    @classmethod
    def from_csv(cls, path: str | Path, subject: str | int | None = None) -> Patient:
        """Read a tidy CSV file (see the module docstring for the columns).

        Parameters
        ----------
        path : str or Path
            A file, or ``"bundled:NAME"`` for a data file shipped with twinbayes.
        subject : str or int, optional
            Which subject to read when the file holds several.

        Raises
        ------
        PatientDataError
            Naming the file, line and column, and how to fix the data.
        """
        path = resolve_data_path(path)
        return cls.from_csv_bytes(read_file(path, MAX_BYTES, PatientDataError), str(path), subject)

    @classmethod
    def from_csv_bytes(cls, raw: bytes, path: str, subject: str | int | None = None) -> Patient:
        """A tidy CSV file's bytes as read by :meth:`from_csv` (``path`` names it in errors)."""
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PatientDataError(
                f"{path}: byte {exc.start} is not UTF-8 text; save the file as UTF-8 (CSV UTF-8 in spreadsheet programs)"
            ) from None
        if not text.strip():
            raise PatientDataError(
                f"{path}: the file is empty; expected a header with columns {', '.join(COLUMNS)}"
            )
        try:
            records, header = _read_rows(path, text)
        except csv.Error as exc:
            raise PatientDataError(f"{path}: not a readable CSV file ({exc})") from None
        if not records:
            raise PatientDataError(f"{path}: the file has a header but no data rows")
        if "subject" in header:
            subjects = list(dict.fromkeys(r["subject"] for _, r in records))
            if subject is None:
                if len(subjects) > 1:
                    raise PatientDataError(
                        f"{path}: the file holds {len(subjects)} subjects ({', '.join(subjects[:10])}"
                        f"{', ...' if len(subjects) > 10 else ''}); choose one: --subject on the command line, subject= in Python, [patient] subject in a study"
                    )
                subject = subjects[0]
            subject = str(subject)
            records = [(ln, r) for ln, r in records if r["subject"] == subject]
            if not records:
                raise PatientDataError(
                    f"{path}: no rows for subject {subject!r}; subjects: {', '.join(subjects)}"
                )
        elif subject is not None:
            raise PatientDataError(
                f"{path}: subject={subject!r} given but the file has no 'subject' column"
            )

        rows, lines = [], []
        for ln, r in records:
            where = f"{path}, line {ln}"
            t = _number(r["time"], f"{where}, column 'time'")
            v = _number(r["value"], f"{where}, column 'value'")
            event = r["event"]
            if event not in EVENTS:
                raise PatientDataError(
                    f"{where}, column 'event': {event!r} is not one of {', '.join(EVENTS)}"
                )
            if not r["name"]:
                raise PatientDataError(
                    f"{where}, column 'name': empty; name the observable, route or covariate"
                )
            rows.append(
                (t, r["time_unit"], event, r["name"], v, r["unit"], _duration(r, event, where))
            )
            lines.append(ln)
        return build_patient(rows, lines, subject or "", path, sha=hashlib.sha256(raw).hexdigest())


def _number(text: str, where: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise PatientDataError(f"{where}: {text!r} is not a number") from None
    if math.isnan(x) or math.isinf(x):
        raise PatientDataError(
            f"{where}: value is {text!r}; remove the row or give a finite number (missing data are left out, not NaN)"
        )
    return x


def _duration(row: dict, event: str, where: str) -> float:
    """The optional ``duration`` of a dose row (0: a bolus); other rows must leave it empty."""
    text = row.get("duration", "")
    if not text:
        return 0.0
    if event != "dose":
        raise PatientDataError(
            f"{where}, column 'duration': only dose rows have a duration (an infusion); leave it empty for {event} rows"
        )
    d = _number(text, f"{where}, column 'duration'")
    if d < 0:
        raise PatientDataError(
            f"{where}, column 'duration': negative infusion duration {d}; give the infusion's length, or 0 for a bolus"
        )
    return d


def _read_rows(path: Path, text: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line number, row) of every data row, and the header; errors name the line."""
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise PatientDataError(
            f"{path}: missing column(s) {', '.join(missing)}; the header must hold {', '.join(COLUMNS)}"
            " (and 'subject' when the file holds several patients)"
        )
    records = []
    for row in reader:
        if None in row:  # more fields than the header
            raise PatientDataError(
                f"{path}, line {reader.line_num}: more fields than the header has columns; a decimal comma "
                "(use a point) or an unquoted comma in a name?"
            )
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        records.append((reader.line_num, row))
    return records, header


def resolve_data_path(path: str | Path) -> Path:
    """``"bundled:NAME"`` -> the bundled data file ``NAME``; any other path as given."""
    if isinstance(path, str) and path.startswith("bundled:"):
        from .library import data_path

        try:
            return data_path(path.removeprefix("bundled:"))
        except FileNotFoundError as exc:
            raise PatientDataError(f"{path}: {exc}") from None
    return Path(path)


PHYSICAL = {
    "weight": ">0",
    "wt": ">0",
    "bw": ">0",
    "height": ">0",
    "ht": ">0",
    "bsa": ">0",
    "bmi": ">0",
    "crcl": ">0",
    "egfr": ">0",
    "gfr": ">0",
    "creatinine": ">0",
    "scr": ">0",
    "age": ">=0",
    "pma": ">=0",
    "pna": ">=0",
    "ga": ">=0",
}
"""Covariates whose name says what they are, with their physical range: a body weight, a height,
a creatinine clearance are > 0; an age is >= 0 (a spec may declare more, ``covariates.NAME.range``)."""


def _check_physical(name: str, value: float, unit: str, where: str) -> None:
    """Refuse a covariate value that no patient can have (a negative weight, age or clearance)."""
    rule = PHYSICAL.get(name.lower())
    if rule is None:
        return
    ok = value > 0 if rule == ">0" else value >= 0
    if not ok:
        raise PatientDataError(
            f"{where}, column 'value': covariate {name!r} = {value:g} {unit} is not physical "
            f"(it must be {rule.replace('>', '> ').replace('> =', '>=')}); correct the value"
        )


def build_patient(rows: list, lines: list[int], subject: str, source: str, sha: str) -> Patient:
    """Validate rows ``(time, time_unit, event, name, value, unit[, duration])`` (``lines``: the
    line of each in ``source``, for messages) and build the patient (``sha``: its data digest)."""
    if not rows:
        raise PatientDataError(f"{source}: no data rows")
    time_unit = rows[0][1]
    obs, doses, inputs, covs = [], [], [], {}
    last_t = -math.inf
    for (t, tu, event, name, v, unit, *duration), ln in zip(rows, lines):
        where = f"{source}, line {ln}"
        try:
            if parse_unit(tu).dims != (("time", 1),):
                raise UnitError(f"{tu!r} is not a time unit (use h, min or d)")
            t = t * conversion_factor(tu, time_unit)
            duration = float(duration[0]) * conversion_factor(tu, time_unit) if duration else 0.0
        except UnitError as exc:
            raise PatientDataError(f"{where}, column 'time_unit': {exc}") from None
        try:
            parse_unit(unit)
        except UnitError as exc:
            raise PatientDataError(f"{where}, column 'unit': {exc}") from None
        if t < 0:
            raise PatientDataError(
                f"{where}, column 'time': negative time {t}; times count from 0 (the first dose or admission)"
            )
        if event == "covariate":
            _check_physical(name, v, unit, where)
            if name in covs and covs[name] != (v, unit):
                raise PatientDataError(
                    f"{where}: covariate {name!r} is given twice with different values "
                    f"({covs[name][0]:g} {covs[name][1]} and {v:g} {unit}); keep one row per covariate"
                )
            covs[name] = (v, unit)
            continue
        if t < last_t:
            raise PatientDataError(
                f"{where}, column 'time': time {t} comes after {last_t} in the file; sort the rows of each subject by time"
            )
        last_t = t
        if event == "observation":
            obs.append((t, name, v, unit))
        elif event == "input":
            inputs.append((t, name, v, unit))
        else:
            if v <= 0:
                raise PatientDataError(f"{where}, column 'value': dose amount must be > 0, got {v}")
            if duration < 0:
                raise PatientDataError(
                    f"{where}: negative infusion duration {duration}; give 0 for a bolus"
                )
            doses.append((t, name, v, unit, duration))
    if not obs:
        raise PatientDataError(
            f"{source}: no observations for subject {_shown(subject)}; a twin needs data to be fitted to"
        )
    if doses and min(d[0] for d in doses) > max(o[0] for o in obs):
        raise PatientDataError(
            f"{source}: every dose (first at t={min(d[0] for d in doses)}) comes after the last observation "
            f"(t={max(o[0] for o in obs)}); the data say nothing about the response to the doses. "
            "Check the time column (units? clock time instead of time since first dose?)"
        )
    ds = xr.Dataset(
        {
            "obs_time": ("obs", np.array([o[0] for o in obs], float)),
            "obs_name": ("obs", np.array([o[1] for o in obs], dtype=str)),
            "obs_value": ("obs", np.array([o[2] for o in obs], float)),
            "obs_unit": ("obs", np.array([o[3] for o in obs], dtype=str)),
            "dose_time": ("dose", np.array([d[0] for d in doses], float)),
            "dose_route": ("dose", np.array([d[1] for d in doses], dtype=str)),
            "dose_amount": ("dose", np.array([d[2] for d in doses], float)),
            "dose_unit": ("dose", np.array([d[3] for d in doses], dtype=str)),
            "dose_duration": ("dose", np.array([d[4] for d in doses], float)),
            "input_time": ("input", np.array([d[0] for d in inputs], float)),
            "input_name": ("input", np.array([d[1] for d in inputs], dtype=str)),
            "input_value": ("input", np.array([d[2] for d in inputs], float)),
            "input_unit": ("input", np.array([d[3] for d in inputs], dtype=str)),
        },
        attrs={"subject": str(subject), "time_unit": time_unit, "source": source, "sha256": sha},
    )
    for name, (v, unit) in covs.items():
        ds[f"covariate_{name}"] = xr.DataArray(v, attrs={"unit": unit})
    return Patient(ds)


def _shown(subject: str) -> str:
    """A subject as messages show it: its pseudonym (messages end up in logs and tickets)."""
    from .privacy import pseudonym

    return repr(pseudonym(str(subject))) if subject else "(the file's one patient)"
