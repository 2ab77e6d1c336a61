"""Build the bundled Windkessel data files (run once; outputs are committed).

1. ``mimicdb041_abp_assumed_inflow.csv``: radial arterial pressure of MIMIC
   record 041 (segment 041s01, 8 s), downsampled from 125 to 25 Hz, with an
   *assumed* inflow as ``input`` rows: a half-sine ejection of 60 mL starting
   at each beat onset of the pressure trace, lasting Weissler's ejection time
   for the measured heart rate (:mod:`twinbayes.model.haemodynamics`).  A beat
   already under way at t = 0 is extrapolated one mean period back.
2. ``windkessel_simulated_pressure_flow.csv``: simulated pressure-flow pairs,
   a three-element Windkessel (Zc 0.05 mmHg s/mL, R 1.0 mmHg s/mL, C 1.3
   mL/mmHg, Pc(0) 80 mmHg) driven by a half-sine inflow (70 mL, 75 beats/min,
   ejection 0.3 s) over 6 s, pressure with N(0, 1 mmHg) noise at 25 Hz, seed 2026.

Run: ``.venv/bin/python scripts/make_windkessel_data.py /work/shared/data``
"""

import sys
from pathlib import Path

import numpy as np

from twinbayes import load_spec
from twinbayes.model.haemodynamics import beat_onsets, half_sine_inflow, weissler_ejection_time
from twinbayes.model.simulate import simulate_patient

OUT = Path(__file__).resolve().parents[1] / "twinbayes" / "data"


def write(path, subject, rows):
    with open(path, "w") as fh:
        fh.write("subject,time,time_unit,event,name,value,unit\n")
        for t, event, name, value, unit in sorted(rows, key=lambda r: r[0]):
            fh.write(f"{subject},{t:.3f},s,{event},{name},{value:.4g},{unit}\n")


def mimic(shared: Path) -> None:
    d = np.loadtxt(shared / "mimicdb041_041s01_abp_pap.csv", delimiter=",", skiprows=1)
    t, abp = d[:, 0], d[:, 1]
    onsets = beat_onsets(t, abp)
    period = float(np.mean(np.diff(onsets)))
    onsets = np.concatenate([[onsets[0] - period], onsets])
    te = weissler_ejection_time(60.0 / period)
    kt, kq = half_sine_inflow(onsets, te, 60.0, float(t[-1]))
    print(f"MIMIC 041: {len(onsets)} onsets, HR {60 / period:.1f} /min, ejection {te:.3f} s")
    rows = [(ti, "observation", "ABP", p, "mmHg") for ti, p in zip(t[::5], abp[::5])]
    rows += [(ti, "input", "inflow", q, "mL/s") for ti, q in zip(kt, kq)]
    write(OUT / "mimicdb041_abp_assumed_inflow.csv", "mimic041", rows)


def simulated() -> None:
    spec = load_spec("windkessel3")
    onsets = np.arange(0.2, 6.0, 0.8)
    kt, kq = half_sine_inflow(onsets, 0.3, 70.0, 6.0)
    times = np.round(np.arange(0.04, 6.0 + 1e-9, 0.04), 3)
    truth = {"Zc": 0.05, "R": 1.0, "C": 1.3, "P0": 80.0, "sigma": 1.0}
    patient = simulate_patient(spec, truth, times, {}, seed=2026, inputs={"Q": (kt, kq)})
    obs = patient.data
    rows = [
        (float(ti), "observation", "ABP", float(v), "mmHg")
        for ti, v in zip(obs["obs_time"].values, obs["obs_value"].values)
    ]
    rows += [(ti, "input", "inflow", q, "mL/s") for ti, q in zip(kt, kq)]
    write(OUT / "windkessel_simulated_pressure_flow.csv", "simulated_wk3", rows)


if __name__ == "__main__":
    mimic(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
    simulated()
