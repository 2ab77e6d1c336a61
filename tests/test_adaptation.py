"""nutpie's mass-matrix adaptation as a fit and study setting (issue #16: the Vmax-Km ridge of
saturable elimination).  Its effect on ESS/s is measured in benchmarks/bench_stan.py; here: that
the setting reaches the sampler, the refits and the study, and that bad values are refused."""

import json

import numpy as np
import pytest

from twinbayes import Patient, load_spec
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.fitting.twin import Refitter, fit
from twinbayes.inputs.library import data_path
from twinbayes.run.study import _parse_sampler
from twinbayes.spec.model_spec import SpecError

SHORT = dict(draws=100, tune=100, chains=2, ladder=NO_LADDER)


def test_low_rank_adaptation_reaches_nutpie_and_the_refits(monkeypatch):
    patient = Patient.from_csv(data_path("theophylline.csv"), subject=1)
    twin = fit(load_spec("pk_1cmt_oral"), patient, seed=1, adaptation="low_rank", **SHORT)
    stats = twin.idata["sample_stats"]
    assert json.loads(stats.attrs["inference_library_settings"])["adaptation"] == "low_rank"
    assert "num_eigenvalues" in stats  # nutpie's low-rank adapter reports its eigenvalues
    assert twin.settings["adaptation"] == "low_rank"
    import nutpie

    seen = []
    real = nutpie.sample

    def spy(*args, **kwargs):
        seen.append(kwargs.get("adaptation"))
        return real(*args, **kwargs)

    monkeypatch.setattr(nutpie, "sample", spy)
    Refitter(twin, tune=50, draws=50).posterior(np.eye(1, twin.design.n_obs, 3, bool)[0], seed=2)
    assert seen == ["low_rank"]


def test_an_unknown_adaptation_is_refused():
    patient = Patient.from_csv(data_path("theophylline.csv"), subject=1)
    with pytest.raises(ValueError, match="adaptation 'dense'"):
        fit(load_spec("pk_1cmt_oral"), patient, adaptation="dense", **SHORT)
    with pytest.raises(ValueError, match="PyMC's sampler: 'diag' only"):
        fit(load_spec("pk_1cmt_oral"), patient, sampler="pymc", adaptation="low_rank", **SHORT)
    with pytest.raises(SpecError, match="sampler.adaptation"):
        _parse_sampler({"adaptation": "dense"})
    with pytest.raises(SpecError, match="sampler.adaptation"):
        _parse_sampler({"sampler": "pymc", "adaptation": "low_rank"})
    assert _parse_sampler({"adaptation": "low_rank"})["adaptation"] == "low_rank"
