"""The spec file format: TOML in, a validated :class:`ModelSpec` out.

A spec describes one twin: its parameters (with priors, units and
descriptions), derived quantities, states and their ODE right-hand sides,
dose routes (with optional closed-form unit-dose solutions), observation
models and the hypothesis it stands for.  ``docs/spec-format.md`` documents
every field; ``model_specs/`` holds the bundled library.

Nothing in a spec is executed: expressions go through the whitelist compiler
in :mod:`twinbayes.spec.expr`, and every error names the file and the field.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..error import SpecError
from ..inputs.units import UnitError, parse_unit
from .errors import ERROR_MODELS, ErrorModel
from .expr import FUNCTIONS, Expression, ExpressionError, compile_expression
from .fields import check_keys
from .population import Population, parse_population
from .priors import Prior

__all__ = [
    "SpecError",
    "Parameter",
    "Fixed",
    "Covariate",
    "Derived",
    "State",
    "Input",
    "Route",
    "ErrorModel",
    "Observation",
    "ModelSpec",
    "load_spec",
]

FORMAT_VERSION = 1
RESERVED = {"t", "tad"} | set(FUNCTIONS)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Parameter:
    name: str
    prior: Prior
    unit: str
    description: str


@dataclass(frozen=True)
class Fixed:
    """A quantity the spec fixes rather than estimates (e.g. a published typical value)."""

    name: str
    value: float
    unit: str
    description: str


@dataclass(frozen=True)
class Covariate:
    """A patient characteristic the spec uses (e.g. body weight), read from the patient's data.

    The value is converted to ``unit``; ``reference`` (e.g. 70 kg) is the value used where no
    patient is at hand (checks of the spec against a reference solution) and documents the
    normalisation of the covariate model.
    """

    name: str
    unit: str
    description: str
    reference: float
    lower: float = -math.inf
    """Smallest physical value (``range = [lower, upper]`` in the spec; default: > 0 for a
    dimensional unit such as kg or mL/min, >= 0 for a time such as an age, none for ``1``)."""
    upper: float = math.inf
    lower_inclusive: bool = True

    def check(self, value: float) -> str | None:
        """Why ``value`` (in :attr:`unit`) is physically impossible, or ``None``."""
        low_ok = value >= self.lower if self.lower_inclusive else value > self.lower
        if low_ok and value <= self.upper and math.isfinite(value):
            return None
        low = f"{'>=' if self.lower_inclusive else '>'} {self.lower:g}"
        return f"{value:g} {self.unit} is outside its physical range ({low} and <= {self.upper:g} {self.unit})"


@dataclass(frozen=True)
class Derived:
    name: str
    expression: Expression
    unit: str
    description: str


@dataclass(frozen=True)
class State:
    name: str
    unit: str
    description: str


@dataclass(frozen=True)
class Input:
    """A forcing input: a measured or assumed time series that drives the dynamics.

    ``series`` names the patient's series (an ``observation`` or ``input`` row
    name); values are interpolated linearly in time.  ``baseline`` optionally
    names a symbol holding the series' value at t = 0 (e.g. basal insulin).
    """

    name: str
    unit: str
    description: str
    series: str
    baseline: str | None
    molar_mass: float | None = None


@dataclass(frozen=True)
class Route:
    """A way doses enter: which state receives them, lag, bioavailability.

    ``solution`` maps state names to closed-form amounts at time-after-dose
    ``tad`` following a unit dose (the impulse response of the linear system);
    doses superpose (linearity).  ``infusion`` maps state names to the amounts
    ``tad`` after a unit-rate input is switched on (the step response, the
    integral of the impulse response from 0 to ``tad``); a zero-order infusion
    is the difference of two steps.  Without them, the matrix exponential is used.
    """

    name: str
    state: str
    unit: str
    lag: Expression | None
    bioavailability: Expression | None
    solution: dict[str, Expression]
    infusion: dict[str, Expression] = field(default_factory=dict)
    molar_mass: float | None = None


@dataclass(frozen=True)
class Observation:
    name: str
    expression: Expression
    unit: str
    error: ErrorModel
    description: str
    valid_from: float = 0.0
    molar_mass: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A validated twin specification.  Build with :func:`load_spec`."""

    name: str
    title: str
    hypothesis: str
    references: tuple[str, ...]
    time_unit: str
    parameters: dict[str, Parameter]
    derived: dict[str, Derived]
    states: dict[str, State]
    rhs: dict[str, Expression]
    linear: bool
    solution: dict[str, Expression]
    initial: dict[str, Expression]
    max_step: float | None
    routes: dict[str, Route]
    observations: dict[str, Observation]
    inputs: dict[str, Input] = field(default_factory=dict)
    fixed: dict[str, Fixed] = field(default_factory=dict)
    covariates: dict[str, Covariate] = field(default_factory=dict)
    population: Population | None = None
    rtol: float | None = None
    atol: float | None = None
    max_steps: int | None = None
    method: str = "explicit"
    source: str = "<string>"
    text: str = field(default="", repr=False)

    @property
    def sha256(self) -> str:
        """Hash of the spec text (provenance)."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def structural_parameters(self) -> list[str]:
        """Parameters that are not residual-error standard deviations."""
        err = {p for o in self.observations.values() for p in o.error.parameters}
        return [p for p in self.parameters if p not in err]

    def evaluate_derived(self, values: dict[str, Any], backend=None) -> dict[str, Any]:
        """Parameters plus derived quantities, evaluated in order."""
        from .expr import NUMPY

        env = dict(values)
        for d in self.derived.values():
            env[d.name] = d.expression(env, backend or NUMPY)
        return env

    def rate_matrix(self, env: dict[str, Any], backend=None):
        """For a linear system, the matrix ``A`` with ``dx/dt = A x``.

        Column ``j`` is the right-hand side evaluated at the unit vector ``e_j``.
        Returns a nested list (rows) of backend scalars.
        """
        from .expr import NUMPY

        names = list(self.states)
        cols = []
        for j in names:
            e = {**env, **{s: (1.0 if s == j else 0.0) for s in names}}
            cols.append([self.rhs[i](e, backend or NUMPY) for i in names])
        return [[cols[j][i] for j in range(len(names))] for i in range(len(names))]

    def typical_values(self) -> dict[str, float]:
        """Prior medians of all parameters, with the fixed values and the covariates' references."""
        return {
            **{p.name: p.prior.median() for p in self.parameters.values()},
            **self.fixed_values(),
            **{c.name: c.reference for c in self.covariates.values()},
        }

    def fixed_values(self) -> dict[str, float]:
        """The spec's fixed quantities (``[fixed.*]``)."""
        return {f.name: f.value for f in self.fixed.values()}


# ---------------------------------------------------------------------------
# parsing helpers


def _table(raw: Any, where: str) -> dict:
    if not isinstance(raw, dict):
        raise SpecError(where, f"must be a table, got {type(raw).__name__}")
    return raw


def _string(raw: dict, key: str, where: str, default: str | None = None) -> str:
    v = raw.get(key, default)
    if not isinstance(v, str):
        raise SpecError(f"{where}.{key}", f"must be a string, got {v!r}")
    return v


def _name(name: str, where: str, taken: set[str]) -> str:
    if not _NAME.fullmatch(name):
        raise SpecError(
            where,
            f"{name!r} is not a valid name (letters, digits, underscores; starts with a letter)",
        )
    if name in RESERVED:
        raise SpecError(where, f"{name!r} is reserved; choose another name")
    if name in taken:
        raise SpecError(where, f"name {name!r} is already used")
    return name


def _unit(raw: dict, where: str) -> str:
    u = _string(raw, "unit", where)
    try:
        parse_unit(u)
    except UnitError as exc:
        raise SpecError(f"{where}.unit", str(exc)) from None
    return u


def _expr(src: Any, allowed: set[str], where: str) -> Expression:
    try:
        return compile_expression(src, frozenset(allowed), where)
    except ExpressionError as exc:
        msg = str(exc)
        prefix = f"{where}: "
        raise SpecError(where, msg[len(prefix) :] if msg.startswith(prefix) else msg) from None


def _parse(doc: dict) -> dict[str, Any]:
    """The checked fields of a :class:`ModelSpec` from a TOML document (sections in dependency order)."""
    check_keys(
        doc,
        "<top level>",
        {"format", "model", "parameters", "states", "dynamics", "observations"},
        {"derived", "routes", "inputs", "fixed", "covariates", "population"},
    )
    if doc["format"] != FORMAT_VERSION:
        raise SpecError(
            "format",
            f"unsupported format {doc['format']!r}; this twinbayes reads format = {FORMAT_VERSION}",
        )
    meta = _parse_model(_table(doc["model"], "model"))
    taken: set[str] = set()
    params = _parse_parameters(_table(doc["parameters"], "parameters"), taken)
    fixed = _parse_fixed(_table(doc.get("fixed", {}), "fixed"), taken)
    covariates = _parse_covariates(_table(doc.get("covariates", {}), "covariates"), taken)
    population, etas = None, {}
    if "population" in doc:
        population, z_params, etas = _parse_population(
            _table(doc["population"], "population"), taken
        )
        params = {**params, **z_params}
    if not params:
        raise SpecError(
            "parameters", "a spec needs at least one parameter (or a [population] section)"
        )
    derived = {**etas, **_parse_derived(_table(doc.get("derived", {}), "derived"), taken)}
    inputs = _parse_inputs(_table(doc.get("inputs", {}), "inputs"), taken)
    quantities = set(taken) - set(inputs)
    states = _parse_states(_table(doc["states"], "states"), taken)
    dynamics = _parse_dynamics(_table(doc["dynamics"], "dynamics"), states, quantities, inputs)
    routes = _parse_routes(
        _table(doc.get("routes", {}), "routes"), states, quantities, dynamics["linear"]
    )
    _check_dynamics_kind(dynamics, routes, states)
    scope = quantities | set(states) | set(inputs)
    observations = _parse_observations(
        _table(doc["observations"], "observations"), {**params, **fixed}, scope, states, routes
    )
    return dict(
        **meta,
        parameters=params,
        derived=derived,
        states=states,
        routes=routes,
        observations=observations,
        inputs=inputs,
        fixed=fixed,
        covariates=covariates,
        population=population,
        **dynamics,
    )


def _parse_model(m: dict) -> dict[str, Any]:
    """``[model]``: name, title, hypothesis, references and the time unit."""
    check_keys(m, "model", {"name", "title", "hypothesis", "references", "time_unit"}, set())
    refs = m["references"]
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise SpecError("model.references", "must be a non-empty list of citation strings")
    time_unit = _unit({"unit": m["time_unit"]}, "model.time_unit")
    if parse_unit(time_unit).dims != (("time", 1),):
        raise SpecError("model.time_unit", f"{time_unit!r} is not a time unit (use h, min or d)")
    from ..inputs.names import check_name

    return dict(
        name=check_name(m["name"], "model.name", "spec name"),
        title=_string(m, "title", "model"),
        hypothesis=_string(m, "hypothesis", "model"),
        references=tuple(refs),
        time_unit=time_unit,
    )


def _section(raw: dict, section: str, taken: set[str], required: set, optional: set, make) -> dict:
    """The entries of ``[section.*]``: each name checked and unique, each table's keys checked,
    ``make(name, entry, where)`` building the value; names are added to ``taken`` in order."""
    out = {}
    for name, entry in raw.items():
        where = f"{section}.{name}"
        _name(name, where, taken)
        entry = _table(entry, where)
        check_keys(entry, where, required, optional)
        out[name] = make(name, entry, where)
        taken.add(name)
    return out


def _parse_parameters(raw_params: dict, taken: set[str]) -> dict[str, Parameter]:
    """``[parameters.*]``: priors, units, descriptions (names added to ``taken``)."""
    params = _section(
        raw_params,
        "parameters",
        taken,
        {"prior", "unit", "description"},
        set(),
        lambda n, e, w: Parameter(
            n, Prior.from_dict(e["prior"], f"{w}.prior"), _unit(e, w), _string(e, "description", w)
        ),
    )
    return params


def _finite(raw: dict, key: str, where: str, default: float | None = None) -> float:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise SpecError(f"{where}.{key}", f"must be a finite number, got {v!r}")
    return float(v)


def _parse_fixed(raw_fixed: dict, taken: set[str]) -> dict[str, Fixed]:
    """``[fixed.*]``: quantities the spec fixes (value, unit, description), e.g. published typical values."""
    return _section(
        raw_fixed,
        "fixed",
        taken,
        {"value", "unit", "description"},
        set(),
        lambda n, e, w: Fixed(n, _finite(e, "value", w), _unit(e, w), _string(e, "description", w)),
    )


def _parse_covariates(raw_covs: dict, taken: set[str]) -> dict[str, Covariate]:
    """``[covariates.*]``: patient characteristics read from the patient file (unit, description, reference)."""
    return _section(
        raw_covs,
        "covariates",
        taken,
        {"unit", "description"},
        {"reference", "range"},
        _covariate,
    )


def _covariate(name: str, raw: dict, where: str) -> Covariate:
    """One ``[covariates.NAME]`` table, with its physical range (declared or by its unit)."""
    unit = _unit(raw, where)
    if "range" in raw:
        r = raw["range"]
        if not (
            isinstance(r, list)
            and len(r) == 2
            and all(not isinstance(x, bool) and isinstance(x, (int, float)) for x in r)
            and r[0] < r[1]
        ):
            raise SpecError(
                f"{where}.range", f"must be [lower, upper] with lower < upper, got {r!r}"
            )
        bounds = dict(lower=float(r[0]), upper=float(r[1]), lower_inclusive=True)
    else:
        dims = dict(parse_unit(unit).dims)
        if not dims:
            bounds = {}
        else:
            bounds = dict(lower=0.0, lower_inclusive=dims == {"time": 1})
    cov = Covariate(
        name,
        unit,
        _string(raw, "description", where),
        _finite(raw, "reference", where, default=1.0),
        **bounds,
    )
    if cov.check(cov.reference):
        raise SpecError(f"{where}.reference", f"{cov.check(cov.reference)}; give a typical value")
    return cov


def _parse_population(raw: dict, taken: set[str]):
    """``[population]``: the deviations as derived quantities of standard-normal parameters.

    Returns the :class:`~twinbayes.spec.population.Population`, the parameters ``<eta>_z`` and
    the derived deviations ``eta = L z`` (names added to ``taken``).
    """
    population = parse_population(raw)
    z_params, etas = {}, {}
    standard = Prior.from_dict({"distribution": "normal", "mu": 0.0, "sigma": 1.0}, "population")
    for z in population.z_names:
        _name(z, "population.etas", taken)
        z_params[z] = Parameter(z, standard, "1", "standardised individual deviation (non-centred)")
        taken.add(z)
    for eta, src in population.eta_expressions().items():
        _name(eta, "population.etas", taken)
        etas[eta] = Derived(
            eta,
            _expr(src, taken.copy(), "population.etas"),
            "1",
            "individual deviation from the typical value (log scale)",
        )
        taken.add(eta)
    return population, z_params, etas


def _parse_derived(raw_derived: dict, taken: set[str]) -> dict[str, Derived]:
    """``[derived.*]``: expressions of the parameters and earlier derived quantities."""
    return _section(
        raw_derived,
        "derived",
        taken,
        {"expression", "unit", "description"},
        set(),
        lambda n, e, w: Derived(
            n,
            _expr(e["expression"], taken.copy(), f"{w}.expression"),
            _unit(e, w),
            _string(e, "description", w),
        ),
    )


def _parse_inputs(raw_inputs: dict, taken: set[str]) -> dict[str, Input]:
    """``[inputs.*]``: forcing inputs and their optional baseline symbols."""
    inputs = {}
    for iname, raw in raw_inputs.items():
        where = f"inputs.{iname}"
        _name(iname, where, taken)
        raw = _table(raw, where)
        check_keys(raw, where, {"unit", "description"}, {"series", "baseline", "molar_mass"})
        taken.add(iname)
        baseline = raw.get("baseline")
        if baseline is not None:
            _name(_string(raw, "baseline", where), f"{where}.baseline", taken)
            taken.add(baseline)
        series = _string(raw, "series", where, iname)
        inputs[iname] = Input(
            iname,
            _unit(raw, where),
            _string(raw, "description", where),
            series,
            baseline,
            _molar_mass(raw, where),
        )
    return inputs


def _parse_states(raw_states: dict, taken: set[str]) -> dict[str, State]:
    """``[states.*]``: units and descriptions."""
    states = {}
    for sname, raw in raw_states.items():
        where = f"states.{sname}"
        _name(sname, where, taken)
        raw = _table(raw, where)
        check_keys(raw, where, {"unit", "description"}, set())
        states[sname] = State(sname, _unit(raw, where), _string(raw, "description", where))
        taken.add(sname)
    if not states:
        raise SpecError("states", "a spec needs at least one state")
    return states


def _parse_dynamics(dyn: dict, states: dict, quantities: set[str], inputs: dict) -> dict[str, Any]:
    """``[dynamics]``: right-hand sides, linearity, closed form, initial values, solver settings."""
    check_keys(
        dyn,
        "dynamics",
        {"rhs"},
        {"linear", "solution", "initial", "max_step", "rtol", "atol", "max_steps", "method"},
    )
    linear = dyn.get("linear", False)
    if not isinstance(linear, bool):
        raise SpecError("dynamics.linear", "must be true or false")
    rhs_raw = _table(dyn["rhs"], "dynamics.rhs")
    if set(rhs_raw) != set(states):
        raise SpecError(
            "dynamics.rhs",
            f"needs exactly one right-hand side per state; states: {sorted(states)}, rhs given for: {sorted(rhs_raw)}",
        )
    rhs = {
        s: _expr(rhs_raw[s], quantities | set(states) | set(inputs) | {"t"}, f"dynamics.rhs.{s}")
        for s in states
    }
    sol_raw = _table(dyn.get("solution", {}), "dynamics.solution")
    if sol_raw and set(sol_raw) != set(states):
        raise SpecError(
            "dynamics.solution",
            f"give a solution for every state ({sorted(states)}), got {sorted(sol_raw)}",
        )
    solution = {s: _expr(sol_raw[s], quantities | {"t"}, f"dynamics.solution.{s}") for s in sol_raw}
    init_raw = _table(dyn.get("initial", {}), "dynamics.initial")
    unknown = set(init_raw) - set(states)
    if unknown:
        raise SpecError(
            "dynamics.initial", f"unknown state(s) {sorted(unknown)}; states: {sorted(states)}"
        )
    initial = {s: _expr(init_raw[s], quantities, f"dynamics.initial.{s}") for s in init_raw}
    if inputs and (linear or solution):
        raise SpecError(
            "inputs",
            "forcing inputs need ODE dynamics: remove dynamics.linear/solution, or the [inputs]",
        )
    method = dyn.get("method", "explicit")
    if method not in ("explicit", "implicit"):
        raise SpecError(
            "dynamics.method",
            f'must be "explicit" (Dormand-Prince 5(4), the default) or "implicit" (ESDIRK, for '
            f"stiff systems), not {method!r}",
        )
    if method == "implicit" and (linear or solution):
        raise SpecError(
            "dynamics.method",
            "applies to numerically integrated ODEs; linear and closed-form dynamics are solved exactly",
        )
    max_step = _positive(dyn, "max_step", "dynamics", "a positive number of time units")
    max_steps = _positive(
        dyn, "max_steps", "dynamics", "a positive whole number of steps", integer=True
    )
    return dict(
        rhs=rhs,
        linear=linear,
        solution=solution,
        initial=initial,
        max_step=max_step,
        rtol=_positive(dyn, "rtol", "dynamics", "a relative tolerance in (0, 0.01]", upper=0.01),
        atol=_positive(dyn, "atol", "dynamics", "a positive absolute tolerance (state units)"),
        max_steps=None if max_steps is None else int(max_steps),
        method=method,
    )


def _parse_routes(
    raw_routes: dict, states: dict, quantities: set[str], linear: bool
) -> dict[str, Route]:
    """``[routes.*]``: receiving state, lag, bioavailability and closed-form unit-dose solutions."""
    routes = {}
    for rname, raw in raw_routes.items():
        where = f"routes.{rname}"
        if not _NAME.fullmatch(rname):
            raise SpecError(where, f"{rname!r} is not a valid route name")
        raw = _table(raw, where)
        check_keys(
            raw,
            where,
            {"state", "unit"},
            {"lag", "bioavailability", "solution", "infusion", "molar_mass"},
        )
        state = _string(raw, "state", where)
        if state not in states:
            raise SpecError(
                f"{where}.state", f"unknown state {state!r}; states: {', '.join(states)}"
            )
        lag = _expr(raw["lag"], quantities, f"{where}.lag") if "lag" in raw else None
        fbio = (
            _expr(raw["bioavailability"], quantities, f"{where}.bioavailability")
            if "bioavailability" in raw
            else None
        )
        sol, inf = (
            _closed_forms(raw, key, where, states, quantities, linear)
            for key in ("solution", "infusion")
        )
        routes[rname] = Route(
            rname, state, _unit(raw, where), lag, fbio, sol, inf, _molar_mass(raw, where)
        )
    return routes


def _closed_forms(
    raw: dict, key: str, where: str, states: dict, quantities: set[str], linear: bool
) -> dict[str, Expression]:
    """``routes.<name>.solution`` or ``.infusion``: state -> closed-form amount in ``tad``."""
    forms = {}
    for sname, src in _table(raw.get(key, {}), f"{where}.{key}").items():
        if sname not in states:
            raise SpecError(
                f"{where}.{key}.{sname}", f"unknown state {sname!r}; states: {', '.join(states)}"
            )
        forms[sname] = _expr(src, quantities | {"tad"}, f"{where}.{key}.{sname}")
    if forms and not linear:
        raise SpecError(
            f"{where}.{key}",
            "closed-form unit-dose solutions need dynamics.linear = true (superposition)",
        )
    return forms


def _check_dynamics_kind(dynamics: dict, routes: dict, states: dict) -> None:
    """The dynamics kinds that can take doses, and what a nonlinear ODE needs."""
    solution, initial = dynamics["solution"], dynamics["initial"]
    if solution and routes:
        raise SpecError(
            "dynamics.solution",
            "a closed-form trajectory in t cannot take doses; remove [routes] or the solution",
        )
    if not dynamics["linear"] and not solution:
        if set(initial) != set(states):
            raise SpecError(
                "dynamics.initial",
                f"a nonlinear ODE without closed form needs an initial value for every state ({sorted(states)}), "
                'e.g. initial.V = "V0"; or give dynamics.solution',
            )
    elif not routes and not solution:
        raise SpecError(
            "dynamics",
            'without dose routes the spec needs a closed-form trajectory: dynamics.solution.<state> = "...t..."',
        )


def _parse_error(err_raw: dict, where: str, params: dict) -> ErrorModel:
    """``observations.<name>.error``: one of :data:`~twinbayes.spec.errors.ERROR_MODELS`."""
    kind = err_raw.get("model")
    if kind not in ERROR_MODELS:
        raise SpecError(
            f"{where}.model",
            f"unknown error model {kind!r}; choose one of {', '.join(ERROR_MODELS)}",
        )
    keys = [f.name for f in fields(ERROR_MODELS[kind])]
    check_keys(err_raw, where, {"model", *keys}, set())
    for k in keys:
        if err_raw[k] not in params:
            raise SpecError(
                f"{where}.{k}",
                f"{err_raw[k]!r} is not a parameter or fixed value; declare it under [parameters] "
                "(or [fixed])",
            )
    return ERROR_MODELS[kind](**{k: err_raw[k] for k in keys})


def _parse_observations(
    raw_obs: dict, params: dict, scope: set[str], states: dict, routes: dict
) -> dict[str, Observation]:
    """``[observations.*]``: expression, unit, error model, ``valid_from``."""
    observations = {}
    for oname, raw in raw_obs.items():
        where = f"observations.{oname}"
        if not _NAME.fullmatch(oname):
            raise SpecError(where, f"{oname!r} is not a valid observation name")
        raw = _table(raw, where)
        check_keys(
            raw, where, {"expression", "unit", "error", "description"}, {"valid_from", "molar_mass"}
        )
        expr = _expr(raw["expression"], scope, f"{where}.expression")
        valid_from = (
            _positive(raw, "valid_from", where, "a time >= 0 in model.time_unit", allow_zero=True)
            or 0.0
        )
        error = _parse_error(_table(raw["error"], f"{where}.error"), f"{where}.error", params)
        observations[oname] = Observation(
            oname,
            expr,
            _unit(raw, where),
            error,
            _string(raw, "description", where),
            valid_from,
            _molar_mass(raw, where),
        )
        for rname, route in routes.items():
            if route.solution and not expr.symbols & set(states) <= set(route.solution):
                missing = sorted(expr.symbols & set(states) - set(route.solution))
                raise SpecError(
                    f"routes.{rname}.solution",
                    f"observation {oname!r} reads state(s) {missing} that have no closed-form solution here",
                )
    if not observations:
        raise SpecError("observations", "a spec needs at least one observation model")
    return observations


def _molar_mass(raw: dict, where: str) -> float | None:
    """Optional ``molar_mass`` (g/mol): lets data given by amount (mmol/L) convert to mass units (mg/dL)."""
    return _positive(raw, "molar_mass", where, "the substance's molar mass in g/mol", upper=1e7)


def _positive(
    raw: dict,
    key: str,
    where: str,
    what: str,
    *,
    upper: float | None = None,
    integer: bool = False,
    allow_zero: bool = False,
):
    """An optional positive number field (``None`` when absent)."""
    v = raw.get(key)
    if v is None:
        return None
    ok = (
        not isinstance(v, bool)
        and isinstance(v, (int, float))
        and bool(np.isfinite(v))
        and (v >= 0 if allow_zero else v > 0)
    )
    ok = ok and (upper is None or v <= upper) and (not integer or float(v).is_integer())
    if not ok:
        raise SpecError(f"{where}.{key}", f"must be {what}, got {v!r}")
    return float(v)


def _check_linear(spec: ModelSpec) -> None:
    """Verify numerically that a spec declared linear has ``rhs(x) = A x``."""
    rng = np.random.default_rng(0)
    env = spec.evaluate_derived(spec.typical_values())
    try:  # a matrix of constants: no time in it (the rate matrix is evaluated without one)
        A = np.array(spec.rate_matrix(env), dtype=float)
    except ExpressionError as exc:
        raise SpecError(
            "dynamics.linear",
            f"the right-hand sides of a linear system must be constant rates times states, free "
            f"of time ({exc}); set linear = false or fix dynamics.rhs",
        ) from None
    names = list(spec.states)
    for _ in range(3):
        x = rng.uniform(0.5, 2.0, len(names))
        e = {**env, **dict(zip(names, x)), "t": 1.0}
        f = np.array([float(spec.rhs[s](e)) for s in names])
        if not np.allclose(f, A @ x, rtol=1e-9, atol=1e-12 * (1 + np.abs(f).max())):
            raise SpecError(
                "dynamics.linear",
                "the right-hand sides are not linear in the states (and free of time); set linear = false or fix dynamics.rhs",
            )


def load_spec(source: str | Path, *, text: str | None = None) -> ModelSpec:
    """Read and validate a spec.

    Parameters
    ----------
    source : str or Path
        A path to a ``.toml`` file, or the name of a bundled spec
        (see :func:`twinbayes.inputs.library.list_specs`).
    text : str, optional
        TOML text to parse instead of reading ``source`` (``source`` is then
        only used in error messages).

    Raises
    ------
    SpecError
        Naming the file, field and a fix.
    """
    if text is None:
        path = Path(source)
        if not path.exists() and path.suffix != ".toml":
            from ..inputs.library import spec_path

            path = spec_path(str(source))
        text = read_text_file(path, str(source))
        source = str(path)
    doc = parse_toml(text, str(source))
    try:
        spec = ModelSpec(**_parse(doc), source=str(source), text=text)
        if spec.linear:
            _check_linear(spec)
    except SpecError as exc:
        raise exc.in_file(str(source)) from None
    return spec


MAX_TEXT_BYTES = 5_000_000
"""Largest spec or study file read (bytes): a spec is a few kB."""


def read_text_file(path: Path, source: str) -> str:
    """The UTF-8 text of a spec or study file the user named (a regular file of at most
    :data:`MAX_TEXT_BYTES`; devices and FIFOs are refused before reading)."""
    from ..inputs.untrusted import read_file

    raw = read_file(
        path,
        MAX_TEXT_BYTES,
        lambda message: SpecError("<file>", message.removeprefix(f"{path}: "), source),
    )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            "<file>", f"byte {exc.start} is not UTF-8 text; save the file as UTF-8", source
        ) from None


def parse_toml(text: str, source: str) -> dict:
    """The TOML document ``text`` (a :class:`SpecError` naming ``source`` when it is not TOML)."""
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as exc:
        raise SpecError("<toml>", f"not valid TOML: {exc}", source) from None
