"""The gate's escalation ladder: refit a twin that fails its convergence gate before excluding it.

A fit that fails the gate is not thrown away at once.  Divergent transitions
usually mean the step size adapted during warm-up was too large for the
posterior's curvature; too-low ESS or a high R-hat after a short warm-up
often mean adaptation had not finished.  The remedy Stan users apply by hand
(Stan Development Team, *Stan Reference Manual*, "Divergent transitions";
Betancourt 2017, arXiv:1701.02434, sec. 6.2) is taken automatically: refit
with a higher target acceptance rate (smaller steps), a longer warm-up and
more draws, from fresh initial points (a new seed) unless R-hat failed
(:meth:`Ladder.settings`).  Every attempt and its diagnostics is recorded;
only when the last rung also fails is the twin excluded, with the reasons of
that last attempt; and a last attempt that passes is still judged with the
chains of every attempt (:func:`twinbayes.fitting.diagnostics.attempts_disagree`): a
twin whose attempts found different modes is reported as multimodal.

What the ladder cannot fix is a posterior that does not mix: separated modes
(e.g. the flip-flop symmetry ``ka <-> ke`` of oral one-compartment models)
keep R-hat high however long the chains run.  Such a twin is excluded and
reported.  Stacking the chains as separate components (Yao, Vehtari & Gelman
2022, "Stacking for non-mixing Bayesian computations: the curse and blessing
of multimodal posteriors", JMLR 23(79)) is the principled alternative; it is
not applied automatically, because its per-chain weights change what the twin
*is*, and a twin with a multimodal posterior is usually a reparameterisation
task for its authors (e.g. an ordering constraint ``ka > ke``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .diagnostics import (
    Diagnostics,
    Gate,
    attempts_disagree,
    diagnose,
    sampler_flags,
    settled_chains,
)

__all__ = [
    "Rung",
    "Ladder",
    "Attempt",
    "DEFAULT_LADDER",
    "DEFAULT_MAXDEPTH",
    "NO_LADDER",
    "ADAPTATIONS",
    "adaptation_problem",
    "Climb",
    "climb",
]

ADAPTATIONS = ("diag", "low_rank")
"""nutpie's mass-matrix adaptations a fit may ask for (``fit(adaptation=...)``, ``[sampler] adaptation``);
every rung of the ladder keeps the fit's."""


def adaptation_problem(adaptation: Any, sampler: str | None) -> str | None:
    """Why ``adaptation`` cannot be used with ``sampler`` (``None`` means nutpie), or ``None`` if it can."""
    if adaptation not in ADAPTATIONS:
        return f"choose {' or '.join(ADAPTATIONS)}, got {adaptation!r}"
    if sampler == "pymc" and adaptation != "diag":
        return "PyMC's sampler: 'diag' only"
    return None


class Rung(NamedTuple):
    """One escalation step, relative to the study's own sampler settings.

    Attributes
    ----------
    target_accept : float
        Target acceptance rate of step-size adaptation (at least the study's).
    tune_factor, draws_factor : float
        Warm-up and kept draws per chain, as multiples of the study's.
    """

    target_accept: float
    tune_factor: float = 1.0
    draws_factor: float = 1.0


@dataclass(frozen=True)
class Ladder:
    """The rungs tried, in order, after a failed first attempt (empty: no escalation).

    The budget is stated by the rungs: at most ``1 + len(rungs)`` fits, the
    last with ``max(tune_factor)`` x warm-up and ``max(draws_factor)`` x draws.
    """

    rungs: tuple[Rung, ...] = (Rung(0.99, 2.0, 1.0), Rung(0.995, 4.0, 2.0))

    def settings(
        self, base: dict[str, Any], step: int, failed: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """Sampler settings of rung ``step`` (1-based) from the first attempt's ``base`` settings.

        ``failed`` names the kinds of reason the previous attempt failed on
        (:meth:`~twinbayes.fitting.diagnostics.Diagnostics.failed_on`): what the rung changes depends on
        it, so that no remedy makes the failure more likely.

        - **R-hat**: the seed is kept, so the chains start from the same overdispersed points
          as before.  A new seed would be a new draw of which mode the chains fall into, and
          re-seeding until R-hat passes selects the attempt whose chains all fell into one
          mode; longer warm-up from the same starts repairs slow adaptation but not separate
          modes.  Otherwise each rung starts from fresh points: seed ``base seed + 7919 step``.
        - **tree depth** (without divergences): the depth limit rises by ``2 step`` and the
          target acceptance rate stays as it was, since smaller steps need longer trajectories
          and would make the failure more likely (Stan Development Team, *Stan Reference
          Manual*, "Tree depth").
        - anything else: ``target_accept`` rises to the rung's.
        """
        rung = self.rungs[step - 1]
        depth_only = "tree depth" in failed and "divergent" not in failed
        out = {
            **base,
            "target_accept": float(base["target_accept"])
            if depth_only
            else max(float(base["target_accept"]), rung.target_accept),
            "tune": int(round(base["tune"] * rung.tune_factor)),
            "draws": int(round(base["draws"] * rung.draws_factor)),
            "seed": int(base["seed"]) + (0 if "R-hat" in failed else 7919 * step),
        }
        if "tree depth" in failed:
            out["maxdepth"] = int(base.get("maxdepth", DEFAULT_MAXDEPTH)) + 2 * step
        return out


DEFAULT_MAXDEPTH = 10
"""NUTS' tree-depth limit (nutpie's and Stan's default, at most 2^10 leapfrog steps a draw)."""


DEFAULT_LADDER = Ladder()
"""Two rungs: ``target_accept`` 0.99 with 2x warm-up, then 0.995 with 4x warm-up and 2x draws."""

NO_LADDER = Ladder(rungs=())
"""No escalation: the first attempt decides."""


class Attempt(NamedTuple):
    """One fit of the ladder and what the gate said of it."""

    step: int
    target_accept: float
    tune: int
    draws: int
    seed: int
    passed: bool
    diagnostics: str
    reasons: tuple[str, ...]
    maxdepth: int = 10

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record (``summary.json``, NetCDF attributes, the report)."""
        return {**self._asdict(), "reasons": list(self.reasons)}


FAILURE_KINDS = ("R-hat", "ESS", "divergent", "tree depth", "E-BFMI")
"""The kinds of gate failure a rung responds to (:meth:`Ladder.settings`)."""


class Climb(NamedTuple):
    """What walking the ladder gave: the last attempt, its settings and verdict, and every attempt."""

    result: Any
    settings: dict[str, Any]
    diagnostics: Diagnostics
    attempts: list[tuple[dict[str, Any], Diagnostics]]


def climb(
    sample: Callable[[dict[str, Any]], Any],
    draws_of: Callable[[Any], dict[str, np.ndarray]],
    base: dict[str, Any],
    gate: Gate,
    ladder: Ladder,
    announce: Callable[[int, dict[str, Any], Diagnostics], None] | None = None,
) -> Climb:
    """Sample; while the gate fails and rungs are left, escalate; then judge every attempt together.

    Parameters
    ----------
    sample : callable
        ``sample(settings)`` runs NUTS and returns its DataTree (``sample_stats`` as nutpie or
        PyMC write it).
    draws_of : callable
        The gated parameters of a result, ``name -> (chain, draw)`` array.
    base : dict
        The first attempt's settings; rungs derive theirs (:meth:`Ladder.settings`).
    gate, ladder
    announce : callable, optional
        Called as ``announce(step, settings, last verdict)`` before each escalation.

    Returns
    -------
    Climb
        A climb that escalated is judged once more with the settled chains of every attempt
        (:func:`~twinbayes.fitting.diagnostics.attempts_disagree`): attempts that found different modes
        make the result multimodal (the first reasons), never converged, even when its last
        attempt passed.
    """
    attempts: list[tuple[dict[str, Any], Diagnostics]] = []
    seen: list[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]] = []
    failed: frozenset[str] = frozenset()
    for step in range(len(ladder.rungs) + 1):
        settings = base if step == 0 else ladder.settings(base, step, failed)
        if step and announce is not None:
            announce(step, settings, attempts[-1][1])
        result = sample(settings)
        draws = draws_of(result)
        diverging, maxdepth, energy = sampler_flags(result)
        diagnostics = diagnose(draws, diverging, maxdepth, gate, energy)
        seen.append((draws, diverging, maxdepth))
        attempts.append((settings, diagnostics))
        if diagnostics.passed:
            break
        failed = frozenset(k for k in FAILURE_KINDS if diagnostics.failed_on(k))
    if len(seen) > 1 and (  # settled chains are needed only once the ladder escalated
        modes := attempts_disagree([(d, settled_chains(d, dv, md)) for d, dv, md in seen], gate)
    ):
        reasons = modes + ([] if diagnostics.passed else diagnostics.reasons)
        diagnostics = dataclasses.replace(diagnostics, passed=False, reasons=reasons)
    return Climb(result, settings, diagnostics, attempts)
