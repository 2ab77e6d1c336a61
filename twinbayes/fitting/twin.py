"""Fitting a twin: the PyMC model, NUTS, and the convergence gate.

:func:`build_model` turns a spec and a patient into a PyMC model whose mean
trajectory is the exact solution of the spec's dynamics (closed form or
matrix exponential, :mod:`twinbayes.dynamics.linear`), so NUTS differentiates
through the dynamics.  :func:`fit` samples it (nutpie by default, PyMC's own
NUTS as fallback), stores the pointwise log-likelihood and posterior
predictive draws, and applies the convergence :class:`~twinbayes.fitting.diagnostics.Gate`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from ..dynamics.design import Design, describe_excluded, design_for
from ..inputs.patient import Patient
from ..model.twin_model import TwinModel, ieee_numerics, obs_dim, patient_data
from ..spec.model_spec import ModelSpec
from .compile import graph_cache
from .compile.compiled_model import compile_model, guard_starts, sample_nuts
from .diagnostics import Diagnostics, Gate, diagnose
from .ladder import DEFAULT_LADDER, DEFAULT_MAXDEPTH, Attempt, Ladder, adaptation_problem, climb
from .misfit import checks_of
from .sensitivity import power_scaling_sensitivity

__all__ = [
    "FitError",
    "FailedFit",
    "Twin",
    "build_model",
    "build_weighted_model",
    "Refitter",
    "fit",
    "default_sampler",
    "posterior_draws",
]

log = logging.getLogger("twinbayes")


def default_sampler() -> str:
    """``"nutpie"``: a declared dependency (fastest here; see docs/benchmarks.md), never guessed from what is installed."""
    return "nutpie"


def build_model(spec: ModelSpec, design: Design) -> pm.Model:
    """The PyMC model of ``spec`` for the data in ``design`` (:meth:`TwinModel.pymc_model`)."""
    return TwinModel.of(spec).pymc_model(design)


def build_weighted_model(spec: ModelSpec, design: Design) -> pm.Model:
    """The model of :func:`build_model` with a 0/1 weight per observation (``pm.Data("obs_weight")``).

    The log posterior is ``log prior + sum_i w_i log p(y_i | theta)``: with
    ``w_i = 0`` observation i is left out exactly, so cross-validation
    refits change data, not the graph, and the model compiles once.
    """
    return TwinModel.of(spec).pymc_model(design, weighted=True)


class Refitter:
    """Refits of one twin with observations left out, compiling the model once.

    Used by cross-validation (:mod:`twinbayes.comparison`): each refit only
    changes the observation weights of :func:`build_weighted_model`.  With
    ``sampler="pymc"`` it falls back to fitting the reduced data set.
    """

    def __init__(self, twin: Twin, **settings):
        self.twin = twin
        self.settings = {
            k: v
            for k, v in twin.settings.items()
            if k
            in ("draws", "tune", "chains", "sampler", "target_accept", "adaptation", "maxdepth")
        }
        self.settings.update(settings)
        self._compiled = None

    def posterior(
        self, holdout: np.ndarray, seed: int, gate: Gate | None = None, **settings
    ) -> tuple[dict[str, np.ndarray], Diagnostics]:
        """Posterior draws (flat arrays) of the spec's parameters without the held-out observations.

        ``gate`` (default: the twin's own) judges the refit; ``settings`` override the
        refitter's sampler settings for this refit (an escalation).
        """
        holdout = np.asarray(holdout, bool)
        s = {**self.settings, **settings}
        gate = self.twin.diagnostics.gate if gate is None else gate
        if (s.get("sampler") or default_sampler()) != "nutpie":
            train, _ = self.twin.design.split(holdout)
            refit = fit(
                self.twin.spec,
                self.twin.patient,
                design=train,
                seed=seed,
                posterior_predictive=False,
                gate=gate,
                **s,
            )
            return posterior_draws(refit), refit.diagnostics
        if (
            self._compiled is None
        ):  # the fit's own compiled model, or (a twin made elsewhere) a new one
            self._compiled = self.twin.compiled or compile_model(
                build_weighted_model(self.twin.spec, self.twin.design)
            )
        model = guard_starts(self._compiled.with_data(obs_weight=(~holdout).astype(float)))
        trace = sample_nuts(
            model,
            draws=s["draws"],
            tune=s["tune"],
            chains=s["chains"],
            seed=seed,
            target_accept=s["target_accept"],
            adaptation=s.get("adaptation", "diag"),
            progress_bar=False,
            save_warmup=False,
            return_raw_trace=True,
            **({"maxdepth": s["maxdepth"]} if "maxdepth" in s else {}),
        )
        draws, diverging, maxdepth, energy = _kept_draws(trace, list(self.twin.spec.parameters))
        return {p: v.reshape(-1) for p, v in draws.items()}, diagnose(
            draws, diverging, maxdepth, gate, energy
        )


def _kept_draws(
    trace, names: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Draws after warm-up, ``(chain, draw)`` per name, the divergence and max-depth flags and the
    energies, read from nutpie's raw (Arrow) trace: what ``nutpie.sample`` would put in a DataTree,
    without building one (most of a short refit's time)."""
    chains, stats = trace.get_arrow_trace()
    kept = [~np.asarray(st.column("tuning").to_numpy(), bool) for st in stats]

    def column(batches, name):
        return np.stack([np.asarray(b.column(name).to_numpy())[k] for b, k in zip(batches, kept)])

    draws = {n: column(chains, n).astype(float) for n in names}
    return (
        draws,
        column(stats, "diverging"),
        column(stats, "maxdepth_reached"),
        column(stats, "energy").astype(float),
    )


@dataclass
class Twin:
    """A fitted twin: one spec's posterior for one patient.

    Attributes
    ----------
    spec : ModelSpec
    patient : Patient
    idata : xarray.DataTree
        ArviZ 1.x groups: ``posterior`` (parameters and derived quantities),
        ``sample_stats``, ``log_likelihood`` (pointwise, for LOO),
        ``posterior_predictive``, ``observed_data``.
    diagnostics : Diagnostics
        Convergence diagnostics and the gate's verdict.
    settings : dict
        Sampler, draws, warm-up, chains and seed.
    timings : dict
        Seconds spent building/compiling, sampling and post-processing.
    excluded : tuple
        Observations left out of the likelihood as (name, time, value), with
        the reason given in :func:`~twinbayes.dynamics.design.design_for`.
    design : Design
        The data the twin was fitted to, in the spec's units.
    attempts : tuple of Attempt
        Every fit of the gate's escalation ladder (:mod:`twinbayes.fitting.ladder`), the last one kept.
    compiled : object, optional
        nutpie's compiled model of the observation-weighted density (all weights 1 for the
        fit), kept so that cross-validation refits change weights, not code: one compilation
        per twin for the fit, the ladder, exact LOO refits and K-fold.  Not saved to files.
    sensitivity : Sensitivity, optional
        Prior and likelihood power-scaling sensitivity and the prior-data conflict flag
        (:mod:`twinbayes.fitting.sensitivity`), computed after every fit.
    """

    spec: ModelSpec
    patient: Patient
    idata: Any
    diagnostics: Diagnostics
    settings: dict
    timings: dict = field(default_factory=dict)
    excluded: tuple = ()
    design: Design | None = None
    attempts: tuple = ()
    compiled: Any = field(default=None, repr=False, compare=False)
    sensitivity: Any = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def converged(self) -> bool:
        """Whether the fit passed its convergence gate."""
        return self.diagnostics.passed

    def pointwise_log_likelihood(self) -> xr.DataArray:
        """All observables' log-likelihood stacked on one ``obs`` dimension: (chain, draw, obs),
        with coordinates ``observable`` and ``time`` (the observations in design order)."""
        ll = self.idata["log_likelihood"]
        parts = []
        for name in self.design.times:
            da = ll[name]
            dim = [d for d in da.dims if d not in ("chain", "draw")][0]
            parts.append(
                da.rename({dim: "obs"})
                .reset_coords(drop=True)
                .assign_coords(observable=("obs", [name] * da.sizes[dim]))
            )
        out = xr.concat(parts, dim="obs") if len(parts) > 1 else parts[0]
        times = np.concatenate([self.design.times[n] for n in self.design.times])
        return out.assign_coords(obs=np.arange(out.sizes["obs"]), time=("obs", times))

    @property
    def warnings(self) -> list[str]:
        """What a reader of this twin's answer must know although the gate passed (misfit,
        prior-data conflict): :func:`twinbayes.fitting.caveats.twin_warnings`."""
        from .caveats import twin_warnings

        return twin_warnings(self)

    @property
    def reasons(self) -> list[str]:
        """Why the gate failed (empty when it passed)."""
        return self.diagnostics.reasons

    def posterior_median(self, name: str) -> float:
        return float(self.idata["posterior"][name].median())

    def summary(self):
        """ArviZ summary table of the parameters and derived quantities."""
        import arviz_stats as az

        return az.summary(
            self.idata, var_names=list(self.spec.parameters) + list(self.spec.derived)
        )

    def __repr__(self) -> str:
        return f"Twin({self.spec.name!r}, patient {self.patient.label!r}: {self.diagnostics})"


def fit(
    spec: ModelSpec,
    patient: Patient,
    *,
    draws: int = 2000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    sampler: str | None = None,
    gate: Gate = Gate(),
    target_accept: float = 0.95,
    progress: bool = False,
    posterior_predictive: bool = True,
    design: Design | None = None,
    ladder: Ladder = DEFAULT_LADDER,
    cores: int | None = None,
    adaptation: str = "diag",
) -> Twin:
    """Fit a twin by NUTS, check convergence, and escalate before giving up.

    Parameters
    ----------
    spec : ModelSpec
    patient : Patient
    draws, tune, chains : int
        Draws kept per chain, warm-up iterations per chain, number of chains.
        2000 draws leave the weakly identified twins (e.g. two-compartment
        oral on single-dose data) clear of the ESS thresholds.
    seed : int
        Seeds sampling and posterior predictive draws; same seed, same numbers.
    sampler : {"nutpie", "pymc"}, optional
        NUTS implementation; default ``"nutpie"`` (a declared dependency, never guessed).
    gate : Gate
        Convergence thresholds; the result's ``converged`` says if they were met.
    target_accept : float
        Target acceptance rate of step-size adaptation.
    progress : bool
        Show a progress bar while sampling.
    posterior_predictive : bool
        Also draw from the posterior predictive distribution.
    design : Design, optional
        The data to fit, already matched to the spec (default:
        ``design_for(spec, patient)``); cross-validation passes subsets.
    ladder : Ladder
        Escalation when a fit fails the gate (:mod:`twinbayes.fitting.ladder`): refits
        with higher target acceptance, longer warm-up, more draws and fresh
        initial points, reusing the compiled model.  ``NO_LADDER`` turns it off.
    cores : int, optional
        Threads nutpie runs the chains on (default: every core).  The draws do not depend on it
        (each chain has its own seeded stream; tested); cohort workers use 1 so that the
        workers, not the chains, share the machine.
    adaptation : {"diag", "low_rank"}
        nutpie's mass-matrix adaptation: diagonal (as Stan's default ``diag_e``), or diagonal
        plus a low-rank correction from the draws' and gradients' covariance (Seyboldt,
        nutpie documentation, "low-rank mass matrix adaptation"), which follows a posterior
        whose parameters are strongly correlated (e.g. ``Vmax`` and ``Km`` of a saturable
        elimination; docs/benchmarks.md).  Refits of the twin use the same.

    Returns
    -------
    Twin
        The last attempt, with every attempt in ``attempts``.  Never silently
        altered: a fit that fails the gate after the ladder is returned with
        ``converged = False`` and the reasons, for the caller to report.
    """
    design = design_for(spec, patient) if design is None else design
    sampler = sampler or default_sampler()
    if sampler not in ("nutpie", "pymc"):
        raise ValueError(f"unknown sampler {sampler!r}; use 'nutpie' or 'pymc'")
    if problem := adaptation_problem(adaptation, sampler):
        raise ValueError(f"adaptation {adaptation!r}: {problem}")
    t0 = time.perf_counter()
    # nutpie: the observation-weighted density (weights 1), which refits reuse with other weights
    model = TwinModel.of(spec).pymc_model(design, weighted=sampler == "nutpie")
    t_build = time.perf_counter() - t0
    log.info(
        "fitting %s to patient %s with %s (%d chains x %d+%d)",
        spec.name,
        patient.label,
        sampler,
        chains,
        tune,
        draws,
    )
    nuts = _Nuts(model, sampler, spec, design, cores)
    base = dict(
        sampler=sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        target_accept=target_accept,
        adaptation=adaptation,
    )
    idata, settings, diagnostics, attempts, t_sample = _sample_with_ladder(
        nuts, spec, base, gate, ladder, progress
    )
    t2 = time.perf_counter()
    _add_pointwise_groups(idata, spec, design, posterior_predictive, settings["seed"] + 1)
    idata = _attach_times(idata, design)
    timings = dict(
        build=t_build,
        compile=nuts.compile_seconds,
        sample=t_sample,
        postprocess=time.perf_counter() - t2,
    )
    idata.attrs.update(
        spec=spec.name,
        spec_sha256=spec.sha256,
        patient=patient.label,
        patient_sha256=patient.sha256,
        seed=seed,
        gate_attempts=json.dumps([a.as_dict() for a in attempts]),
    )
    twin = Twin(
        spec,
        patient,
        idata,
        diagnostics,
        settings,
        timings,
        design.excluded,
        design,
        tuple(attempts),
        nuts.compiled,
    )
    try:  # a diagnostic: it must never take a finished fit down
        twin.sensitivity = power_scaling_sensitivity(twin)
    except (ValueError, FloatingPointError, RuntimeError, KeyError, IndexError) as exc:
        log.warning("%s: prior sensitivity not computed (%s)", spec.name, exc)
    if design.excluded:
        log.info("%s: %s: %s", spec.name, describe_excluded(spec, design.excluded), design.excluded)
    (log.info if twin.converged else log.warning)("%s: %s", spec.name, diagnostics)
    return twin


def _sample_with_ladder(
    nuts: _Nuts, spec: ModelSpec, base: dict, gate: Gate, ladder: Ladder, progress: bool
):
    """Sample along the ladder (:func:`~twinbayes.fitting.ladder.climb`).  Returns the last attempt, its
    settings and verdict, every attempt's record and the seconds spent sampling."""
    seconds = [0.0]

    def sample(settings: dict):
        t0 = time.perf_counter()
        idata = nuts.sample(settings, progress)
        seconds[0] += time.perf_counter() - t0
        return idata

    def draws_of(idata) -> dict[str, np.ndarray]:
        post = idata["posterior"]
        return {p: np.asarray(post[p].values, float) for p in spec.parameters}

    def announce(step: int, settings: dict, last: Diagnostics) -> None:
        _log_escalation(spec.name, last, step, len(ladder.rungs), settings)

    done = climb(sample, draws_of, base, gate, ladder, announce)
    if done.diagnostics.failed_on("multimodal"):
        log.warning("%s: %s", spec.name, done.diagnostics.reasons[0])
    attempts = [_attempt(step, s, d) for step, (s, d) in enumerate(done.attempts)]
    return done.result, done.settings, done.diagnostics, attempts, seconds[0]


def _attempt(step: int, settings: dict, diagnostics: Diagnostics) -> Attempt:
    """The record of one attempt of the ladder."""
    return Attempt(
        step,
        float(settings["target_accept"]),
        int(settings["tune"]),
        int(settings["draws"]),
        int(settings["seed"]),
        diagnostics.passed,
        str(diagnostics),
        tuple(diagnostics.reasons),
        int(settings.get("maxdepth", DEFAULT_MAXDEPTH)),
    )


def _log_escalation(name: str, last: Diagnostics, step: int, rungs: int, settings: dict) -> None:
    log.warning(
        "%s: gate failed (%s); escalating, step %d of %d: target_accept %.3f, %d warm-up, %d draws, "
        "seed %d, max tree depth %d",
        name,
        "; ".join(last.reasons[:3]),
        step,
        rungs,
        settings["target_accept"],
        settings["tune"],
        settings["draws"],
        settings["seed"],
        settings.get("maxdepth", DEFAULT_MAXDEPTH),
    )


class FitError(RuntimeError):
    """A fit could not run at all (no finite initial point, solver or sampler failure); names the spec and cause."""


@dataclass
class FailedFit:
    """A twin whose fit failed outright: reported with its cause, never averaged in."""

    spec: ModelSpec
    patient: Patient
    cause: str
    converged: bool = False
    attempts: tuple = ()
    excluded: tuple = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def reasons(self) -> list[str]:
        return [f"fit failed: {self.cause}"]


_COMPILED: OrderedDict[tuple[str, str], Any] = OrderedDict()
"""Compiled weighted models of this process by (spec hash, design structure), most recent last."""
COMPILED_CACHE_SIZE = 32


def compile_label(spec: ModelSpec, design: Design) -> str:
    """What makes a weighted model (and so its compiled code) what it is: spec text and design structure."""
    return f"weighted {spec.sha256} {design.structure_key()}"


def compiled_for(spec: ModelSpec, design: Design, model: pm.Model):
    """nutpie's compiled ``model`` (the weighted model of ``spec`` and ``design``) with this
    patient's data: compiled once per spec and design structure in a process, so other patients
    with the same times and doses (a cohort on one protocol, simulated patients) reuse it.

    The machine code and data are those a fresh compilation would use: same draws.
    """
    key = (spec.sha256, design.structure_key())
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key].with_data(obs_weight=np.ones(design.n_obs), **patient_data(design))
    compiled = compile_model(model)
    graph_cache.remember(compile_label(spec, design))
    _COMPILED[key] = compiled
    while len(_COMPILED) > COMPILED_CACHE_SIZE:
        _COMPILED.popitem(last=False)
    return compiled


class _Nuts:
    """NUTS on one PyMC model, compiled once (nutpie) and sampled as often as the ladder asks."""

    def __init__(
        self,
        model: pm.Model,
        sampler: str,
        spec: ModelSpec,
        design: Design,
        cores: int | None = None,
    ):
        self.cores = cores
        self.spec_name = spec.name
        self.design = design
        self.model = model
        self.sampler = sampler
        self.compile_seconds = 0.0
        self._compiled = None
        if sampler == "nutpie":
            t0 = time.perf_counter()
            self._compiled = compiled_for(spec, design, model)
            self.compile_seconds = time.perf_counter() - t0

    @property
    def compiled(self):
        """nutpie's compiled model (``None`` with the PyMC sampler)."""
        return self._compiled

    def sample(self, settings: dict, progress: bool):
        """One run of NUTS with ``settings``; a sampler failure becomes :class:`FitError` naming the spec."""
        try:
            return self._sample(settings, progress)
        except (RuntimeError, ValueError, FloatingPointError, ZeroDivisionError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "initialization points failed" in str(exc):
                first = (
                    "the log density is not finite at any initial point (an ODE that blows up or fails, "
                    "or a density undefined near the prior's typical values)"
                )
            raise FitError(f"spec {self.spec_name!r}: {first}") from exc

    def _sample(self, settings: dict, progress: bool):
        """One run of NUTS with ``settings`` (draws, tune, chains, seed, target_accept)."""
        s = settings
        if self.sampler == "nutpie":
            starts: list = []
            idata = sample_nuts(
                guard_starts(self._compiled, record=starts),
                draws=s["draws"],
                tune=s["tune"],
                chains=s["chains"],
                seed=s["seed"],
                target_accept=s["target_accept"],
                adaptation=s.get("adaptation", "diag"),
                progress_bar=progress,
                save_warmup=False,
                **({"cores": self.cores} if self.cores else {}),
                **({"maxdepth": s["maxdepth"]} if "maxdepth" in s else {}),
            )
            idata.attrs["chain_starts"] = json.dumps(
                [[float(v) for v in point] for _, point in sorted(starts, key=lambda s: s[0])]
            )
            values = self.design.values
            idata["observed_data"] = xr.Dataset(
                {n: (obs_dim(n), np.asarray(y, float)) for n, y in values.items()},
                coords={obs_dim(n): np.arange(len(y)) for n, y in values.items()},
            )
            return idata
        with self.model, ieee_numerics():
            t0 = time.perf_counter()
            step = pm.NUTS(  # compiles the logp and gradient
                target_accept=s["target_accept"],
                max_treedepth=s.get("maxdepth", DEFAULT_MAXDEPTH),
            )
            self.compile_seconds += time.perf_counter() - t0
            return pm.sample(
                draws=s["draws"],
                tune=s["tune"],
                chains=s["chains"],
                cores=1,
                step=step,
                random_seed=s["seed"],
                progressbar=progress,
                compute_convergence_checks=False,
            )


def _add_pointwise_groups(
    idata, spec: ModelSpec, design: Design, predictive: bool, seed: int
) -> None:
    """Pointwise log-likelihood and posterior predictive draws, computed with NumPy.

    Same densities as the PyMC model (tested to ~1e-12) without compiling
    PyTensor functions for them: this step used to cost more than sampling.
    """
    post = idata["posterior"]
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    params = {p: np.asarray(post[p].values, float).reshape(-1) for p in spec.parameters}

    def group(values: dict[str, np.ndarray]) -> xr.Dataset:
        return xr.Dataset(
            {
                n: (("chain", "draw", obs_dim(n)), v.reshape(chains, draws, -1))
                for n, v in values.items()
            },
            coords={
                "chain": post["chain"].values,
                "draw": post["draw"].values,
                **{obs_dim(n): np.arange(len(t)) for n, t in design.times.items()},
            },
        )

    model = TwinModel.of(spec)
    moments = model.moments(params, design)  # one ODE solve per draw serves both
    idata["log_likelihood"] = group(model.log_likelihood(params, design, moments))
    if predictive:
        replicates = model.simulate(params, design, np.random.default_rng(seed), moments)
        idata["posterior_predictive"] = group(replicates)
        checks = checks_of(moments, design, replicates)
        idata["posterior_predictive"].attrs["predictive_checks"] = json.dumps(
            [c.as_dict() for c in checks]
        )


def _attach_times(idata, design: Design):
    """Add observation times as a coordinate to the observation groups."""
    for group in ("observed_data", "log_likelihood", "posterior_predictive"):
        if group not in idata.children:
            continue
        ds = idata[group].to_dataset()
        for name, t in design.times.items():
            if name in ds:
                ds = ds.assign_coords({f"{name}_time": (obs_dim(name), t)})
        idata[group] = ds
    return idata


def posterior_draws(
    twin: Twin, max_draws: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Posterior draws of the spec's parameters as flat arrays (chains stacked).

    With ``max_draws``, a seeded random subset of that many draws.
    """
    post = twin.idata["posterior"]
    flat = {p: np.asarray(post[p].values, float).reshape(-1) for p in twin.spec.parameters}
    n = len(next(iter(flat.values())))
    if max_draws is not None and max_draws < n:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_draws, replace=False))
        flat = {k: v[idx] for k, v in flat.items()}
    return flat
