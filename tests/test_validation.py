"""Simulation-based calibration and model recovery (issue #18)."""

import numpy as np
import pytest

from twinbayes import Patient, load_spec
from twinbayes.run.cli import main
from twinbayes.run.validation import prior_draw, recovery, recovery_table, sbc
from twinbayes.spec.priors import Prior


@pytest.fixture(scope="module")
def indometacin1():
    return Patient.from_csv("bundled:indometacin.csv", subject=1)


def test_prior_draws_follow_the_spec_s_priors():
    spec = load_spec("pk_1cmt_iv")
    rng = np.random.default_rng(0)
    draws = [prior_draw(spec, rng) for _ in range(4000)]
    log_cl = np.log([d["CL"] for d in draws])  # lognormal(1.6, 1.0)
    assert abs(log_cl.mean() - 1.6) < 0.06 and abs(log_cl.std() - 1.0) < 0.05
    sd = np.array([d["sigma_prop"] for d in draws])  # halfnormal(0.2): mean 0.2 sqrt(2/pi)
    assert abs(sd.mean() - 0.2 * np.sqrt(2 / np.pi)) < 0.006


def test_sbc_passes_for_the_spec_and_flags_a_simulator_with_another_prior(indometacin1):
    spec = load_spec("pk_1cmt_iv")
    good = sbc(spec, indometacin1, n_sims=60, seed=5)
    assert good.calibrated, str(good)
    assert good.ranks.shape == (60, 4) and good.ranks.values.max() <= good.n_ranks
    wider = {"sigma_prop": Prior.from_dict({"distribution": "halfnormal", "sigma": 0.4}, "test")}
    bad = sbc(spec, indometacin1, n_sims=60, seed=5, simulator_priors=wider)
    assert not bad.calibrated and not bad.tests["sigma_prop"].calibrated, str(bad)
    assert bad.tests["CL"].calibrated  # the other parameters' ranks stay uniform


@pytest.mark.slow
def test_sbc_of_the_oral_pk_spec_with_500_simulations():
    """Must-show 1 of #18: 500 simulations, L = 99, each parameter at 0.05 / 5 (Bonferroni)."""
    patient = Patient.from_csv("bundled:theophylline.csv", subject=1)
    result = sbc(load_spec("pk_1cmt_oral"), patient, n_sims=500, seed=1)
    print(result)
    assert result.calibrated


def test_validate_commands_write_their_results(tmp_path, indometacin1, capsys):
    out = tmp_path / "sbc"
    code = main(
        ["validate", "sbc", "pk_1cmt_iv", "--patient", "bundled:indometacin.csv", "--subject", "1",
         "--sims", "8", "--draws", "300", "--out", str(out)]
    )  # fmt: skip
    assert code in (0, 1)  # 8 simulations: a verdict, not a test of calibration
    assert (out / "sbc.nc").is_file() and (out / "figures" / "sbc.png").is_file()
    assert "SBC: 8 simulations" in (out / "sbc.txt").read_text()
    assert main(["validate", "sbc", "pk_1cmt_iv", "--patient", "bundled:indometacin.csv",
                 "--subject", "1", "--out", str(out)]) == 2  # fmt: skip
    assert "exists" in capsys.readouterr().err


@pytest.mark.slow
def test_recovery_of_one_and_two_compartment_iv_twins(indometacin1):
    """Recovery on the indometacin design (11 levels over 8 h after an IV bolus); must-show 2 of #18 is
    the oral study in docs/validation.md."""
    specs = [load_spec("pk_1cmt_iv"), load_spec("pk_2cmt_iv")]
    result = recovery(specs, indometacin1, n_sims=10, seed=2)
    print(recovery_table(result))
    top = result["top"].values
    # measured 2026-11-27: [[7, 3], [7, 3]]. A one-compartment truth is recovered; a two-compartment
    # one drawn from the prior often has a peripheral compartment this design cannot see (near-ties)
    assert top.sum() == 20 and top[0, 0] >= 6


def test_sbc_on_dask_workers_gives_the_ranks_of_one_process(indometacin1):
    spec = load_spec("pk_1cmt_iv")
    short = dict(n_sims=4, seed=9, draws=300, tune=300)
    here = sbc(spec, indometacin1, **short)
    there = sbc(spec, indometacin1, n_workers=2, **short)
    np.testing.assert_array_equal(here.ranks.values, there.ranks.values)
    assert here.unconverged == there.unconverged


def test_sbc_thins_by_the_ess_and_keeps_ranks_uniform_with_few_draws():
    """Thinning follows the ESS (Talts et al. 2018, sec. 5.1), not a fixed step; with fewer kept
    draws than ranks, the mapped ranks of a uniform rank are uniform (chi-square, 0..n_ranks)."""
    from scipy import stats

    from twinbayes.run.validation import _rank, sbc_thinning

    assert sbc_thinning(2000, 99, ess=1500.0) == 20  # enough ESS: every 20th draw, as before
    assert sbc_thinning(2000, 99, ess=50.0) == 40  # 50 effective draws: every 40th
    rng = np.random.default_rng(3)
    n_ranks, kept = 19, 7
    ranks = [  # truth and draws from one distribution: the rank among 7 draws is uniform on 0..7
        _rank(rng.uniform(size=kept), t, n_ranks, u) for t, u in rng.uniform(size=(20_000, 2))
    ]
    counts = np.bincount(ranks, minlength=n_ranks + 1)
    assert stats.chisquare(counts).pvalue > 0.01 and len(counts) == n_ranks + 1


@pytest.mark.slow
def test_sbc_of_the_configuration_users_run(indometacin1):
    """SBC with 4 chains and the escalation ladder on (the defaults of a fit), not 2 chains without
    it: the ladder's selection of attempts must not bias the ranks."""
    from twinbayes.fitting.ladder import DEFAULT_LADDER

    result = sbc(
        load_spec("pk_1cmt_iv"), indometacin1, n_sims=200, seed=7, chains=4, ladder=DEFAULT_LADDER
    )
    print(result)
    assert result.calibrated, str(result)
