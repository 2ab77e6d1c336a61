"""The newcomer's case of issue 36, rebuilt from its description, run through the CLI's pipeline.

A patient simulated from a Michaelis-Menten model (1000 mg loading dose, then 100 mg q8h; 7 levels over 96 h; the scenario asks about 100 mg q8h from the start, as a study's
regimen scenarios are whole regimens) and three twins: the user's own saturable spec (a copy of the bundled
``pk_1cmt_iv_mm`` under another name), the bundled ``pk_1cmt_iv`` and ``pk_1cmt_iv_mm``.  The
question: does 100 mg q8h keep the day-7 trough in 10-20 mg/L?  Under the simulating model the
trough is below 10 (a miss).  Before issue 36 twinbayes answered P = 1.000 +- 0.000 ("1.00-1.00
over the uncertainty of the weights"): stacking put weight 1 on the linear twin.

Run::

    .venv/bin/python benchmarks/newcomer_case.py OUT_DIR [--weights stacking|bayes_stacking]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TRUTH = {"Vmax": 20.0, "Km": 6.0, "V": 40.0, "sigma_prop": 0.1}
LEVELS = np.array([2.0, 6.0, 12.0, 24.0, 48.0, 72.0, 95.5])


def write_inputs(folder: Path, weights: str) -> Path:
    """The patient's CSV, the user's spec and the study file; returns the study's path."""
    import twinbayes as tb
    from twinbayes.model.simulate import simulate_patient

    spec = tb.load_spec("pk_1cmt_iv_mm")
    dose_t = np.array([0.0] + [8.0 * k for k in range(1, 12)])
    amounts = np.array([1000.0] + [100.0] * 11)
    patient = simulate_patient(spec, TRUTH, LEVELS, {"iv": (dose_t, amounts)}, seed=36)
    obs = patient.data
    events = [(float(t), 0, f"1,{t},h,dose,iv,{a},mg,") for t, a in zip(dose_t, amounts)]
    events += [
        (float(t), 1, f"1,{float(t)},h,observation,concentration,{float(v):.4f},mg/L,")
        for t, v in zip(obs["obs_time"].values, obs["obs_value"].values)
    ]
    rows = ["subject,time,time_unit,event,name,value,unit,duration"]
    rows += [row for _, _, row in sorted(events)]
    (folder / "patient.csv").write_text("\n".join(rows) + "\n")
    own = spec.text.replace('name = "pk_1cmt_iv_mm"', 'name = "my_saturable_twin"')
    (folder / "my_saturable_twin.toml").write_text(own)
    study = f"""
[study]
name = "newcomer"
seed = 36
[patient]
data = "patient.csv"
subject = "1"
[twins]
specs = ["my_saturable_twin.toml", "pk_1cmt_iv", "pk_1cmt_iv_mm"]
[comparison]
weights = "{weights}"
[[scenarios]]
name = "100 mg q8h"
route = "iv"
amount = 100
interval = 8
doses = 21
[predictions]
times = {{ start = 0, stop = 168, step = 1 }}
[[qois]]
name = "day-7 trough"
kind = "value_at"
at = 167.9
[[targets]]
qoi = "day-7 trough"
lower = 10
upper = 20
"""
    path = folder / "study.toml"
    path.write_text(study)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--weights", default="stacking")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    study = write_inputs(args.out, args.weights)
    from twinbayes.run.cli import main as cli

    return cli(["run", str(study), "--out", str(args.out / "results"), "--force"])


if __name__ == "__main__":
    sys.exit(main())
