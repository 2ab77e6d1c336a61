"""Same study, same seed: bit-identical numbers whatever the state of the compile caches.

Runs a small fit in fresh processes: with an empty PyTensor/Numba cache
(cold), again with that cache filled (warm), and with another empty cache.
Compiled code loaded from the cache and code compiled afresh must compute
the same floating-point numbers (no fast-math reassociation), so every
posterior, log-likelihood and predictive array is identical.
"""

import os
import subprocess
import sys

SCRIPT = """
import hashlib, numpy as np, twinbayes as tb
from twinbayes.fitting.ladder import NO_LADDER
from twinbayes.inputs.library import data_path
patient = tb.Patient.from_csv(data_path("theophylline.csv"), subject=4)
twin = tb.fit(tb.load_spec("pk_1cmt_oral"), patient, seed=7, draws=200, tune=200, chains=2, ladder=NO_LADDER)
h = hashlib.sha256()
for group in ("posterior", "log_likelihood", "posterior_predictive"):
    ds = twin.idata[group].to_dataset()
    for name in sorted(ds.data_vars):
        h.update(np.ascontiguousarray(ds[name].values).tobytes())
print("DIGEST", h.hexdigest())
"""


def _digest(compiledir, home):
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={compiledir}", "HOME": str(home)}
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return [line for line in out.stdout.splitlines() if line.startswith("DIGEST")][0]


def test_bit_identical_cold_warm_and_other_cache(tmp_path):
    first, second = tmp_path / "cache1", tmp_path / "cache2"
    cold = _digest(first, tmp_path / "home1")
    warm = _digest(first, tmp_path / "home1")
    other = _digest(second, tmp_path / "home2")
    assert cold == warm == other
