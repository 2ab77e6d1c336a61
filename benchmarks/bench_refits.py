"""Cross-validation refits: one compiled model with observation weights vs one fit per fold.

10-fold CV of pk_1cmt_oral on Theophylline subject 1 (4 chains x 1000 + 2000), both ways, two
rounds interleaved in one process; wall-clock seconds and their ratio.

    .venv/bin/python benchmarks/bench_refits.py
"""

import time

from twinbayes import Patient, load_spec
from twinbayes.comparison import kfold
from twinbayes.fitting.twin import fit
from twinbayes.inputs.library import data_path


def main(rounds: int = 2):
    patient = Patient.from_csv(data_path("theophylline.csv"), subject=1)
    twin = fit(load_spec("pk_1cmt_oral"), patient, seed=1)
    for r in range(rounds):
        t0 = time.perf_counter()
        folds = kfold(twin, k=10, seed=r)
        t_once = time.perf_counter() - t0
        t0 = time.perf_counter()
        for f in range(10):
            keep = folds["fold"].values != f
            fit(
                twin.spec,
                patient,
                design=twin.design.subset({"concentration": keep}),
                seed=f,
                posterior_predictive=False,
            )
        t_each = time.perf_counter() - t0
        print(
            f"round {r}: compile once {t_once:.1f} s, one fit per fold {t_each:.1f} s, ratio {t_each / t_once:.1f}"
        )


if __name__ == "__main__":
    main()
