"""The gate's escalation ladder: it rescues a fit that failed for want of adaptation, and gives up on one that cannot mix."""

import json
from pathlib import Path

import numpy as np

from twinbayes import Patient, load_spec
from twinbayes.diagnostics import Gate
from twinbayes.fitting import fit
from twinbayes.ladder import NO_LADDER, Ladder, Rung
from twinbayes.library import data_path

# y = a^2 + noise with a symmetric prior on a: the sign of a is not identified, the
# posterior has two separated modes (+5, -5) and chains started apart never meet.
SIGN_SPEC = (Path(__file__).parent / "data" / "sign_symmetric.toml").read_text()

SMALL_GATE = Gate(ess_bulk_min=100, ess_tail_min=100)


def test_ladder_rescues_a_fit_with_too_short_warm_up():
    patient = Patient.from_csv(data_path("indometacin.csv"), subject=1)
    spec = load_spec("pk_1cmt_iv")
    short = dict(draws=300, tune=8, chains=2, seed=3, gate=SMALL_GATE)
    bare = fit(spec, patient, ladder=NO_LADDER, **short)
    assert not bare.converged and len(bare.attempts) == 1  # 8 warm-up steps: step size not adapted
    twin = fit(spec, patient, ladder=Ladder((Rung(0.99, 60.0, 4.0),)), **short)
    first, last = twin.attempts
    assert not first.passed and first.reasons == tuple(bare.reasons)  # the same first attempt
    assert (
        last.passed
        and twin.converged
        and (last.tune, last.draws) == (480, 1200)
        and last.seed != first.seed
    )
    assert twin.settings["tune"] == 480  # refits and provenance use what passed
    recorded = json.loads(twin.idata.attrs["gate_attempts"])
    assert [a["passed"] for a in recorded] == [False, True]


def test_ladder_gives_up_on_a_posterior_that_cannot_mix():
    spec = load_spec("sign.toml", text=SIGN_SPEC)
    times = np.arange(1.0, 9.0)
    y = 25.0 + 0.1 * np.random.default_rng(0).standard_normal(len(times))
    patient = Patient.from_records([(t, "y", v, "1") for t, v in zip(times, y)])
    twin = fit(spec, patient, draws=300, tune=300, chains=8, seed=1, gate=SMALL_GATE)
    assert len(twin.attempts) == 3 and not any(
        a.passed for a in twin.attempts
    )  # the default: 2 rungs
    assert not twin.converged and any("R-hat of a" in r for r in twin.reasons)
    assert twin.attempts[-1].target_accept == 0.995 and twin.attempts[-1].draws == 600
    a = twin.idata["posterior"]["a"].values
    assert (a > 0).any() and (a < 0).any()  # both modes visited by different chains
