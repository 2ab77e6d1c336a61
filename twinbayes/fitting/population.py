"""Hierarchical (NLME) fits of a cohort, and the population prior they give a new patient's twin.

A spec with a ``[population]`` section (:mod:`twinbayes.spec.population`) is a population model:
its ``[parameters]`` are the population's (typical values, covariate effects, residual error),
its ``etas`` the individual deviations.  :func:`fit_population` samples the joint posterior of a
cohort with NUTS, the deviations non-centred (``eta_ik = omega_k z_ik``, ``z_ik ~ N(0, 1)``;
Betancourt & Girolami 2015, "Hamiltonian Monte Carlo for hierarchical models"), and gates it like
every fit.  :meth:`PopulationFit.individual_spec` turns the posterior into the spec of one new
patient's twin: the population parameters fixed at their posterior medians and the deviations'
prior ``N(0, diag(omega)^2)`` at the posterior medians of ``omega`` -- the population prior of
Bayesian forecasting (Sheiner & Beal 1982, J Pharm Sci 71:1344), here with the full posterior of
the patient's deviations rather than only its mode (the empirical Bayes estimate).

A spec whose ``[population]`` gives a ``correlation`` matrix asks for a full ``Omega`` (NONMEM's
``$OMEGA BLOCK``): the cohort fit then estimates ``Omega = diag(omega) R diag(omega)`` with an
LKJ(2) prior on the correlations (Lewandowski, Kurowicka & Joe 2009, J Multivar Anal
100:1989), ``eta_i = L z_i`` with ``L`` its Cholesky factor, and reports each correlation as
``corr_<eta_a>_<eta_b>``; the spec's own correlation values are only the one-patient prior.
Without ``correlation`` the deviations are independent (``$OMEGA DIAGONAL``).
"""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dynamics.design import Design, design_for
from ..inputs.patient import Patient
from ..model.twin_model import TwinModel
from ..spec.expr import PYTENSOR
from ..spec.model_spec import ModelSpec, SpecError, load_spec
from .diagnostics import Diagnostics, Gate
from .ladder import DEFAULT_LADDER, Ladder, climb

__all__ = ["PopulationFit", "fit_population"]


LKJ_ETA = 2.0
"""Shape of the LKJ prior on the deviations' correlations: mildly favours small ones."""


def omega_name(eta: str) -> str:
    """The name of the standard deviation of ``eta`` in a cohort posterior."""
    return f"omega_{eta}"


def correlation_names(spec: ModelSpec) -> list[str]:
    """``corr_<a>_<b>`` for each pair of deviations whose correlation a cohort fit estimates."""
    pop = spec.population
    if pop is None or not correlated(spec):
        return []
    return [f"corr_{a}_{b}" for i, a in enumerate(pop.etas) for b in pop.etas[i + 1 :]]


def correlated(spec: ModelSpec) -> bool:
    """Whether the spec asks for correlated deviations (a ``correlation`` matrix other than I)."""
    pop = spec.population
    return pop is not None and not np.allclose(pop.correlation, np.eye(len(pop.etas)))


@dataclass(frozen=True)
class PopulationFit:
    """The posterior of a hierarchical fit of a cohort.

    Attributes
    ----------
    spec : ModelSpec
        The population spec.
    subjects : tuple of str
        The cohort's subject labels (pseudonyms unless the patients opted in to identifiers), in
        the order of the ``subject`` dimension.
    idata : xarray.DataTree
        Posterior of the population parameters, ``omega_<eta>``, the deviations ``eta``
        (``subject`` x ``deviation``) and each subject's derived quantities (e.g. ``CL``, ``V``).
    diagnostics : Diagnostics
        The gate's verdict on every parameter: population, ``omega`` and each deviation.
    seconds : float
        Wall time of compilation and sampling.
    """

    spec: ModelSpec
    subjects: tuple[str, ...]
    idata: Any
    diagnostics: Diagnostics
    seconds: float
    ids: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    @property
    def converged(self) -> bool:
        return self.diagnostics.passed

    @property
    def population_names(self) -> list[str]:
        """The population parameters and the deviations' standard deviations."""
        etas = self.spec.population.etas
        return (
            population_parameters(self.spec)
            + [omega_name(e) for e in etas]
            + correlation_names(self.spec)
        )

    def summary(self) -> dict[str, tuple[float, float, float]]:
        """Name -> (posterior median, 5 % and 95 % quantiles) of each population quantity."""
        post = self.idata["posterior"].to_dataset()
        out = {}
        for name in self.population_names:
            x = post[name].values.ravel()
            out[name] = tuple(float(v) for v in np.quantile(x, [0.5, 0.05, 0.95]))
        return out

    def individual(self, subject: str, name: str) -> np.ndarray:
        """Posterior draws of ``name`` (a derived quantity or deviation) for one cohort subject,
        given by its identifier in the data or its label."""
        post = self.idata["posterior"].to_dataset()
        subject = str(subject)
        i = self.ids.index(subject) if subject in self.ids else self.subjects.index(subject)
        if name in self.spec.population.etas:
            return post["eta"].isel(subject=i).sel(deviation=name).values.ravel()
        return post[name].isel(subject=i).values.ravel()

    def individual_spec(self) -> ModelSpec:
        """The spec of a new patient's twin with this cohort's posterior as its prior.

        Population parameters become ``[fixed]`` at their posterior medians.  The new patient's
        deviations get the covariance of their *predictive* distribution, moment-matched
        (:meth:`predictive_deviation_cov`): the posterior mean of ``Omega`` (so the uncertainty
        of ``omega``, NONMEM's ``omega^2_CL`` 0.0294 +- 0.0134 in the phenobarbital cohort, is
        not dropped: posterior medians of ``omega`` gave a prior 3-7 % too narrow), plus the
        posterior covariance of the log typical values that each deviation multiplies (the
        uncertainty of the fixed typical values, folded in).  ``[population] sd`` and
        ``correlation`` are its square-root diagonal and correlation matrix.  What it
        approximates: each individual quantity ``q = f(theta) exp(eta)`` has the predictive
        mean and variance of ``log q`` at the covariates' reference values; its tails are
        normal, where the predictive's are a scale mixture of normals (heavier).  The text says
        where the values came from, so the spec file can be saved and reviewed (``spec.text``).
        """
        import tomli_w

        doc = tomllib.loads(self.spec.text)
        est = self.summary()
        fixed = doc.setdefault("fixed", {})
        for name in population_parameters(self.spec):
            raw = doc["parameters"].pop(name)
            med, lo, hi = est[name]
            fixed[name] = {
                "value": med,
                "unit": raw["unit"],
                "description": f"{raw['description']} (posterior median of a cohort fit of "
                f"{len(self.subjects)} subjects; 90% interval {lo:.4g} to {hi:.4g})",
            }
        cov = self.predictive_deviation_cov()
        sd = np.sqrt(np.diag(cov))
        doc["population"]["sd"] = [float(v) for v in sd]
        corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
        np.fill_diagonal(corr, 1.0)
        if correlated(self.spec) or not np.allclose(corr, np.eye(len(sd)), atol=1e-3):
            doc["population"]["correlation"] = [[float(v) for v in row] for row in corr]
        doc["population"].pop("sd_prior", None)
        doc["model"]["name"] = f"{self.spec.name}-individual"
        doc["model"]["title"] = f"{self.spec.title} (population prior from a cohort fit)"
        text = (
            f"# Generated by twinbayes from a cohort fit of {self.spec.source} "
            f"({len(self.subjects)} subjects): population parameters fixed at posterior medians;\n"
            "# deviations with the moment-matched covariance of a new individual's predictive\n"
            "# distribution (posterior mean of Omega + posterior covariance of the log typical values).\n"
            + tomli_w.dumps(doc)
        )
        return load_spec(f"{self.spec.name}-individual.toml", text=text)

    def predictive_deviation_cov(self) -> np.ndarray:
        """Covariance of a new individual's deviations, moment-matched to the cohort's predictive.

        .. math::

            \\Sigma_{new} = E[\\Omega \\mid y] + \\operatorname{Cov}[\\log f(\\theta) \\mid y],

        the law of total covariance for ``log q = log f(theta) + eta``, ``eta | Omega ~ N(0,
        Omega)``, where ``f(theta)`` is the individual quantity that ``exp(eta)`` multiplies (the
        first derived quantity using the deviation), at ``eta = 0`` and the covariates' reference
        values, evaluated per posterior draw.
        """
        post = self.idata["posterior"].to_dataset()
        etas = list(self.spec.population.etas)
        omega = np.stack([post[omega_name(e)].values.reshape(-1) for e in etas], axis=1)
        if correlated(self.spec):
            corr = post["omega_corr"].values.reshape(-1, len(etas), len(etas))
        else:
            corr = np.broadcast_to(np.eye(len(etas)), (len(omega), len(etas), len(etas)))
        mean_omega = np.mean(omega[:, :, None] * corr * omega[:, None, :], axis=0)
        log_f = np.stack([np.log(self._typical(e, post)) for e in etas], axis=1)
        return mean_omega + np.atleast_2d(np.cov(log_f, rowvar=False))

    def _typical(self, eta: str, post) -> np.ndarray:
        """Per posterior draw, the derived quantity that ``exp(eta)`` multiplies, at ``eta = 0``
        and the covariates' references (ones where no derived quantity uses ``eta``)."""
        spec = self.spec
        users = [d.name for d in spec.derived.values() if eta in d.expression.symbols]
        n = post.sizes["chain"] * post.sizes["draw"]
        if not users:
            return np.ones(n)
        env = {
            **spec.fixed_values(),
            **{c.name: c.reference for c in spec.covariates.values()},
            **{p: post[p].values.reshape(-1) for p in population_parameters(spec)},
            **dict.fromkeys(spec.population.z_names, 0.0),
        }
        values = spec.evaluate_derived(env)[users[0]]
        return np.broadcast_to(np.asarray(values, float), (n,))


def population_parameters(spec: ModelSpec) -> list[str]:
    """The spec's parameters other than the standardised deviations (the population's)."""
    z = set(spec.population.z_names) if spec.population else set()
    return [p for p in spec.parameters if p not in z]


def _cohort_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` without the one-patient deviations (``eta = L z``): the cohort model supplies them."""
    pop = spec.population
    return dataclasses.replace(
        spec,
        parameters={k: v for k, v in spec.parameters.items() if k not in pop.z_names},
        derived={k: v for k, v in spec.derived.items() if k not in pop.etas},
    )


def _check_population_spec(spec: ModelSpec) -> None:
    pop = spec.population
    if pop is None:
        raise SpecError(
            "population",
            f"spec {spec.name!r} has no [population] section: declare the individual deviations "
            '(etas = ["eta_CL", ...], sd = [...]) to fit a cohort',
            spec.source,
        )


def population_model(spec: ModelSpec, designs: list[Design], subjects: list[str]):
    """The PyMC model of a cohort: population priors, non-centred deviations, every subject's likelihood."""
    import pymc as pm
    import pytensor.tensor as pt

    pop = spec.population
    cohort = _cohort_spec(spec)
    twin = TwinModel.of(cohort)
    per_subject = [d.name for d in cohort.derived.values()]
    coords = {"subject": subjects, "deviation": list(pop.etas), "deviation_": list(pop.etas)}
    with pm.Model(coords=coords) as model:
        shared = {name: cohort.parameters[name].prior.to_pymc(name) for name in cohort.parameters}
        z = pm.Normal("eta_z", 0.0, 1.0, dims=("subject", "deviation"))
        eta = pm.Deterministic("eta", _deviations(spec, z), dims=("subject", "deviation"))
        terms, derived = [], {n: [] for n in per_subject}
        for i, design in enumerate(designs):
            twin.check_data(design)
            env = {**shared, **{e: eta[i, k] for k, e in enumerate(pop.etas)}}
            full = cohort.evaluate_derived({**env, **twin.constants(design)}, PYTENSOR)
            for n in per_subject:
                derived[n].append(pt.as_tensor(full[n]))
            for name, mu in twin.means(env, design, PYTENSOR).items():
                err = twin.errors[name]
                dist, kwargs = err.pymc(mu, err.sd(full, mu, pt))
                terms.append(pm.logp(dist.dist(**kwargs), design.values[name]).sum())
        pm.Potential("loglik", pt.add(*terms))
        for n, values in derived.items():
            if all(v.ndim == 0 for v in values):
                pm.Deterministic(n, pt.stack(values), dims="subject")
    return model


def _deviations(spec: ModelSpec, z):
    """``eta = z diag(omega)`` (independent), or ``eta_i = L z_i`` with ``L L^T = Omega`` under
    an LKJ prior on the correlations (inside the model context)."""
    import pymc as pm
    import pytensor.tensor as pt

    pop = spec.population
    if not correlated(spec):
        omega = pt.stack([pop.sd_prior.to_pymc(omega_name(e)) for e in pop.etas])
        return z * omega[None, :]
    k = len(pop.etas)
    chol, corr, sds = pm.LKJCholeskyCov(
        "omega_chol",
        n=k,
        eta=LKJ_ETA,
        sd_dist=pop.sd_prior.to_pymc_dist(shape=k),
        compute_corr=True,
    )
    for i, e in enumerate(pop.etas):
        pm.Deterministic(omega_name(e), sds[i])
    pm.Deterministic("omega_corr", corr, dims=("deviation", "deviation_"))
    names = iter(correlation_names(spec))
    for i in range(k):
        for j in range(i + 1, k):
            pm.Deterministic(next(names), corr[i, j])
    return z @ chol.T


def fit_population(
    spec: ModelSpec | str,
    patients: list[Patient],
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 0,
    target_accept: float = 0.9,
    gate: Gate = Gate(),
    progress: bool = False,
    ladder: Ladder = DEFAULT_LADDER,
) -> PopulationFit:
    """Fit a population spec to a cohort: the joint posterior of population and individuals.

    Parameters
    ----------
    spec : ModelSpec or str
        A spec with a ``[population]`` section (or its path / bundled name).
    patients : list of Patient
        The cohort, e.g. ``[Patient.from_csv(path, subject=s) for s in ...]``.
    draws, tune, chains, seed, target_accept
        NUTS settings (nutpie).
    gate : Gate
        Convergence thresholds for every parameter: the population parameters, ``omega`` (and
        correlations) and each subject's deviations (``eta[subject, deviation]``).
    ladder : Ladder
        Escalation when the gate fails, with the rules of a single twin's fit
        (:meth:`~twinbayes.fitting.ladder.Ladder.settings`; every attempt's settled chains judged
        together, :func:`~twinbayes.fitting.diagnostics.attempts_disagree`).  The attempts are stored in
        the posterior's attribute ``gate_attempts``.

    Returns
    -------
    PopulationFit
        Check ``converged`` (and ``diagnostics.reasons``) before using it.

    References
    ----------
    Sheiner LB, Rosenberg B, Marathe VV (1977). Estimation of population characteristics of
    pharmacokinetic parameters from routine clinical data. J Pharmacokinet Biopharm 5:445-479.
    """
    from .compile.compiled_model import compile_model, guard_starts, sample_nuts

    spec = spec if isinstance(spec, ModelSpec) else load_spec(spec)
    _check_population_spec(spec)
    if not patients:
        raise ValueError("fit_population needs at least one patient")
    designs = [design_for(spec, p) for p in patients]
    ids = [p.id for p in patients]
    if len(set(ids)) != len(ids):
        raise ValueError("each patient of a cohort must be a different subject")
    subjects = [p.label for p in patients]
    t0 = time.perf_counter()
    compiled = compile_model(population_model(spec, designs, subjects))
    base = dict(draws=draws, tune=tune, seed=seed, target_accept=target_accept)
    done = climb(
        lambda s: sample_nuts(
            guard_starts(compiled),
            draws=s["draws"],
            tune=s["tune"],
            chains=chains,
            seed=s["seed"],
            target_accept=s["target_accept"],
            progress_bar=progress,
            **({"maxdepth": s["maxdepth"]} if "maxdepth" in s else {}),
        ),
        lambda idata: _gated_draws(idata, spec),
        base,
        gate,
        ladder,
    )
    idata = done.result
    idata.attrs["gate_attempts"] = json.dumps(
        [{**s, "passed": d.passed, "reasons": d.reasons} for s, d in done.attempts]
    )
    seconds = time.perf_counter() - t0
    return PopulationFit(spec, tuple(subjects), idata, done.diagnostics, seconds, tuple(ids))


def _gated_draws(idata, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Every parameter the gate judges, as (chain, draw) arrays: population quantities and each
    subject's deviations (``eta[i,k]``, subject i and deviation k)."""
    post = idata["posterior"]
    names = (
        population_parameters(spec)
        + [omega_name(e) for e in spec.population.etas]
        + correlation_names(spec)
    )
    out = {n: np.asarray(post[n].values, float) for n in names}
    eta = np.asarray(post["eta"].values, float)  # (chain, draw, subject, deviation)
    for i in range(eta.shape[2]):
        for k, e in enumerate(spec.population.etas):
            out[f"{e}[{i}]"] = eta[:, :, i, k]
    return out


def subjects_in(path) -> list[str]:
    """The subject identifiers of a multi-subject patient file, in file order."""
    import csv

    from ..inputs.patient import resolve_data_path

    with open(resolve_data_path(path), newline="") as fh:
        return list(dict.fromkeys(row["subject"] for row in csv.DictReader(fh)))
