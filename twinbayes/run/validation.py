"""Method validation: simulation-based calibration (SBC) and model-recovery studies.

**SBC** (Talts, Betancourt, Simpson, Vehtari & Gelman 2018, arXiv:1804.06788): draw
parameters :math:`\\tilde\\theta` from the prior, data :math:`\\tilde y` from the model, fit
the spec to :math:`\\tilde y`, and count how many of ``L`` (thinned) posterior draws fall
below :math:`\\tilde\\theta`.  If the inference is right, the rank is uniform on
``0..L`` for every parameter.  Ranks become PIT values ``(rank + U) / (L + 1)``
(randomised to break ties; uniform on (0, 1) exactly when the ranks are uniform) and are
tested with the simultaneous ECDF band of Säilynoja, Bürkner & Vehtari (2022, Stat Comput
32:32), :func:`~twinbayes.fitting.calibration.pit_uniformity_test`.

**Model recovery**: simulate patients from each spec on one design, fit every spec to
every data set, and count how often the true spec is ranked first (by PSIS-LOO elpd) and
how much stacking weight it gets: a confusion matrix of the comparison itself.

Every fit of one spec on one design shares one compiled model (only the observed
values change), so a study costs compilation once per spec plus sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import NamedTuple

import numpy as np
import xarray as xr

from ..dynamics.design import Design, design_for
from ..fitting.calibration import PitTest, pit_uniformity_test
from ..fitting.ladder import NO_LADDER
from ..fitting.twin import fit
from ..inputs.patient import Patient
from ..model.twin_model import TwinModel
from ..spec.model_spec import ModelSpec
from ..spec.priors import Prior
from .cohort import map_tasks

__all__ = ["SBCResult", "sbc", "sbc_thinning", "recovery", "recovery_table", "prior_draw"]


class SBCResult(NamedTuple):
    """Ranks and uniformity tests of an SBC study.

    Attributes
    ----------
    ranks : xarray.DataArray
        ``(sim, parameter)``: posterior draws (of ``n_ranks``) below the true value.
    tests : dict
        Parameter -> :class:`~twinbayes.fitting.calibration.PitTest` of its ranks.
    n_ranks : int
        ``L``, posterior draws per rank (after thinning).
    thinning : int
        Every ``thinning``-th posterior draw was kept (the largest over the simulations:
        :func:`sbc_thinning` chooses it from each fit's smallest bulk ESS).
    unconverged : int
        Simulations whose fit failed its convergence gate (their ranks are kept: dropping
        them would bias the ranks towards the easy simulations).
    alpha : float
        Study-wide level: each parameter is tested at ``alpha / n_parameters`` (Bonferroni).
    """

    ranks: xr.DataArray
    tests: dict[str, PitTest]
    n_ranks: int
    thinning: int
    unconverged: int
    alpha: float

    def to_dataset(self) -> xr.Dataset:
        """Ranks, p-values and verdicts as one Dataset (attributes: L, thinning, gate failures, level)."""
        names = list(self.tests)
        return xr.Dataset(
            {
                "rank": self.ranks,
                "p_value": ("parameter", [self.tests[n].p_value for n in names]),
                "uniform": ("parameter", [self.tests[n].calibrated for n in names]),
            },
            attrs={
                "n_ranks": self.n_ranks,
                "thinning": self.thinning,
                "unconverged": self.unconverged,
                "alpha": self.alpha,
            },
        )

    @property
    def calibrated(self) -> bool:
        """Every parameter's ranks inside the simultaneous band."""
        return all(t.calibrated for t in self.tests.values())

    def __str__(self) -> str:
        lines = [
            f"SBC: {self.ranks.sizes['sim']} simulations, {self.n_ranks} ranks (every {self.thinning}-th draw), "
            f"{self.unconverged} fit(s) failed their gate; simultaneous ECDF test per parameter at "
            f"{self.alpha:g}/{len(self.tests)} (Bonferroni, study-wide level {self.alpha:g})"
        ]
        for name, t in self.tests.items():
            verdict = "uniform" if t.calibrated else "NOT uniform: miscalibrated"
            lines.append(f"  {name:<16} p = {t.p_value:.3f}  {verdict}")
        return "\n".join(lines)


def prior_draw(
    spec: ModelSpec, rng: np.random.Generator, priors: Mapping[str, Prior] | None = None
) -> dict[str, float]:
    """One value per free parameter from its prior (or from ``priors[name]`` where given)."""
    priors = dict(priors or {})
    return {
        name: float(priors.get(name, p.prior).sample(rng))
        for name, p in spec.parameters.items()
        if p.prior is not None
    }


def _simulated_design(spec: ModelSpec, design: Design, params: dict, rng) -> Design:
    """``design`` with observations drawn from the spec at ``params``."""
    model = TwinModel.of(spec)
    draws = model.simulate({k: np.array([v]) for k, v in params.items()}, design, rng)
    return design.with_values({k: v[0] for k, v in draws.items()})


def sbc(
    spec: ModelSpec,
    patient: Patient,
    *,
    n_sims: int = 100,
    n_ranks: int = 99,
    simulator_priors: Mapping[str, Prior] | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    **fit_kwargs,
) -> SBCResult:
    """Simulation-based calibration of ``spec`` on the design of ``patient``'s data.

    Parameters
    ----------
    spec : ModelSpec
    patient : Patient
        Supplies the design: observation times, doses, covariates (its values are not used).
    n_sims : int
        Simulations (data sets); Talts et al. use 1000, a few hundred detect gross errors.
    n_ranks : int
        ``L``: the posterior draws of each fit are thinned to this many (equally spaced over the
        pooled chains), so that the ranks are of nearly independent draws.
    simulator_priors : mapping, optional
        Parameter -> prior used to *simulate* instead of the spec's (the fit keeps the spec's):
        a deliberately miscalibrated study, which the test should flag.
    alpha : float
        Study-wide level of the uniformity tests (each parameter at ``alpha / n_parameters``).
    seed : int
        Simulation ``i`` draws with ``default_rng([seed, i])`` and fits with seed ``seed + i``.
    progress : callable, optional
        Called as ``progress(done, n_sims)`` after each fit.
    scheduler, n_workers
        Run the simulations on Dask (:func:`~twinbayes.run.cohort.map_tasks`): a scheduler address or a
        ``LocalCluster`` of ``n_workers``; default one process.  The results do not depend on it.
    **fit_kwargs
        Sampler settings for :func:`~twinbayes.fitting.twin.fit` (default 1000 draws x 2 chains, no ladder).

    Returns
    -------
    SBCResult
    """
    settings = {"draws": 1000, "tune": 1000, "chains": 2, "ladder": NO_LADDER} | fit_kwargs
    names = [n for n, p in spec.parameters.items() if p.prior is not None]
    one = partial(_sbc_one, spec, patient, names, n_ranks, simulator_priors, seed, settings)
    rows = map_tasks(
        one, range(n_sims), scheduler=scheduler, n_workers=n_workers, progress=progress
    )
    ranks = np.array([r for r, _, _ in rows], int).reshape(n_sims, len(names))
    unconverged = sum(not ok for _, ok, _ in rows)
    thinning = max(r[2] for r in rows)
    pit = (ranks + np.random.default_rng([seed, n_sims]).uniform(size=ranks.shape)) / (n_ranks + 1)
    level = alpha / len(names)  # Bonferroni: the study-wide verdict holds at level alpha
    tests = {
        name: pit_uniformity_test(pit[:, j], alpha=level, seed=seed) for j, name in enumerate(names)
    }
    da = xr.DataArray(ranks, dims=("sim", "parameter"), coords={"parameter": names})
    return SBCResult(da, tests, n_ranks, thinning, unconverged, alpha)


def _sbc_one(spec, patient, names, n_ranks, simulator_priors, seed, settings, i: int):
    """Simulation ``i``: (ranks of the true values, gate passed, thinning)."""
    rng = np.random.default_rng([seed, i])
    truth = prior_draw(spec, rng, simulator_priors)
    data = _simulated_design(spec, design_for(spec, patient), truth, rng)
    twin = fit(spec, patient, design=data, seed=seed + i, posterior_predictive=False, **settings)
    post = twin.idata["posterior"]
    ess = float(np.nanmin(twin.diagnostics.table.ess_bulk.values))
    thinning = sbc_thinning(post.sizes["chain"] * post.sizes["draw"], n_ranks, ess)
    u = np.random.default_rng([seed, i, 1]).uniform(size=len(names))
    ranks = [
        _rank(post[n].values.reshape(-1)[::thinning][:n_ranks], truth[n], n_ranks, uk)
        for n, uk in zip(names, u)
    ]
    return ranks, twin.converged, thinning


def sbc_thinning(n_draws: int, n_ranks: int, ess: float) -> int:
    """Keep every ``thinning``-th draw: at least ``n_draws / ess`` apart, so that the kept draws are
    nearly independent (Talts et al. 2018, sec. 5.1: ranks of autocorrelated draws are not
    uniform), and no closer than needed for ``n_ranks`` of them."""
    by_ess = int(np.ceil(n_draws / ess)) if np.isfinite(ess) and ess > 0 else n_draws
    return max(1, n_draws // n_ranks, by_ess)


def _rank(draws: np.ndarray, truth: float, n_ranks: int, u: float) -> int:
    """The rank of ``truth`` among ``draws`` on the scale of ``n_ranks`` draws.

    With fewer kept draws ``L`` than ``n_ranks`` (a low ESS), the rank ``r`` of ``L`` is mapped by
    its randomised PIT ``(r + u) / (L + 1)`` to ``floor(PIT (n_ranks + 1))``: uniform on
    ``0..n_ranks`` whenever ``r`` is uniform on ``0..L``.
    """
    r = int(np.sum(draws < truth))
    if len(draws) >= n_ranks:
        return r
    return min(n_ranks, int((r + u) / (len(draws) + 1) * (n_ranks + 1)))


def recovery(
    specs: Sequence[ModelSpec],
    patient: Patient,
    *,
    n_sims: int = 20,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    **fit_kwargs,
) -> xr.Dataset:
    """A model-recovery study: which spec the comparison prefers when each spec made the data.

    For every true spec and simulation, parameters come from its prior and data from the
    spec on the design of ``patient``; every spec is fitted and compared by PSIS-LOO
    (:func:`~twinbayes.comparison.compare`, exact refits where Pareto k is high).  Each
    simulation is a task (``scheduler``/``n_workers`` as in :func:`sbc`).

    Returns
    -------
    xarray.Dataset
        ``top`` ``(true, fitted)``: simulations where ``fitted`` had the highest elpd;
        ``stacking`` and ``pseudo_bma`` ``(true, fitted)``: mean weights; ``elpd_diff``
        ``(true, sim, fitted)``: each spec's elpd minus the true spec's; ``converged``
        ``(true, sim, fitted)``.  Comparisons include twins that failed their gate (the
        ``converged`` array says which) so that no simulation is silently dropped.
    """
    settings = {"draws": 1000, "tune": 1000, "chains": 2, "ladder": NO_LADDER} | fit_kwargs
    names = [s.name for s in specs]
    k = len(specs)
    for s in specs[1:]:
        for obs, o in specs[0].observations.items():
            if obs not in s.observations or s.observations[obs].unit != o.unit:
                raise ValueError(
                    f"recovery needs specs with the same observables in the same units: {s.name} "
                    f"lacks {obs!r} in {o.unit}"
                )
    one = partial(_recovery_one, list(specs), patient, seed, settings)
    items = [(t, i) for t in range(k) for i in range(n_sims)]
    rows = map_tasks(one, items, scheduler=scheduler, n_workers=n_workers, progress=progress)
    top = np.zeros((k, k), int)
    weights = {m: np.zeros((k, n_sims, k)) for m in ("stacking", "pseudo_bma")}
    diff, converged = np.zeros((k, n_sims, k)), np.zeros((k, n_sims, k), bool)
    for (t, i), row in zip(items, rows):
        top[t, int(np.argmax(row["elpd"]))] += 1
        for m in weights:
            weights[m][t, i] = row[m]
        diff[t, i] = row["elpd"] - row["elpd"][t]
        converged[t, i] = row["converged"]
    return xr.Dataset(
        {
            "top": (("true", "fitted"), top),
            "stacking": (("true", "fitted"), weights["stacking"].mean(axis=1)),
            "pseudo_bma": (("true", "fitted"), weights["pseudo_bma"].mean(axis=1)),
            "elpd_diff": (("true", "sim", "fitted"), diff),
            "converged": (("true", "sim", "fitted"), converged),
        },
        coords={"true": names, "fitted": names},
        attrs={"n_sims": n_sims, "seed": seed},
    )


def recovery_table(result: xr.Dataset) -> str:
    """The confusion matrices of a recovery study as text (rows: the spec that made the data)."""
    names = [str(n) for n in result.fitted.values]
    width = max(len(n) for n in names) + 2
    lines = [
        f"model recovery: {result.attrs['n_sims']} simulations per true spec; rows: true spec, "
        "columns: the spec fitted"
    ]
    for title, var, fmt in (
        ("ranked first by PSIS-LOO elpd (count)", "top", "{:>{w}d}"),
        ("mean stacking weight", "stacking", "{:>{w}.2f}"),
        ("mean pseudo-BMA+ weight", "pseudo_bma", "{:>{w}.2f}"),
    ):
        lines += ["", title, " " * width + "".join(f"{n:>{width}}" for n in names)]
        for t in names:
            values = result[var].sel(true=t).values
            lines.append(f"{t:<{width}}" + "".join(fmt.format(v, w=width) for v in values))
    failed = int((~result.converged).sum())
    lines.append(
        f"\n{failed} of {result.converged.size} fits failed their convergence gate (kept in the ranking)"
    )
    return "\n".join(lines)


def _recovery_one(specs, patient, seed, settings, item: tuple[int, int]) -> dict:
    """Simulation ``i`` of true spec ``t``: every spec's elpd, weights and gate."""
    from ..comparison import compare

    t, i = item
    rng = np.random.default_rng([seed, t, i])
    data = _simulated_design(
        specs[t], design_for(specs[t], patient), prior_draw(specs[t], rng), rng
    )
    twins = [
        fit(
            s,
            patient,
            design=design_for(s, patient).with_values(data.values),
            seed=seed + i,
            **settings,
        )
        for s in specs
    ]
    table = compare(twins, include_unconverged=True, seed=seed + i).table.sel(
        twin=[s.name for s in specs]
    )
    return {
        "elpd": table.elpd.values,
        "stacking": table.stacking.values,
        "pseudo_bma": table.pseudo_bma.values,
        "converged": [tw.converged for tw in twins],
    }
