"""The bundled example study end to end, cold and warm, stage by stage.

What a user waits for: ``twinbayes run`` on the bundled example (three oral PK twins of
Theophylline subject 1, comparison, two scenarios, figures, report), run as the command a user
types (``python -m twinbayes.run.cli run``; the stages from its closing ``time:`` line).  Each round
runs the study in fresh processes: *cold* with an empty PyTensor compile directory, then *warm* with the
directory the cold run filled.  Reported per stage (fits, of which compile and sample; compare;
scenarios; files; figures; report) and for the whole process (imports included), median over
rounds; and whether cold and warm runs gave bit-identical arrays (SHA-256 over every array of
every NetCDF file in the results folder).

With ``--against DIR`` (a checkout of another version, e.g. ``git worktree add /tmp/ref REV``)
each round also runs that version's code, interleaved with this one's (reference cold, this cold,
reference warm, this warm), and reports the ratio of the whole-process times round by round: a
comparison that holds when the machine's speed drifts during the run.

Run::

    .venv/bin/python benchmarks/bench_study.py [--rounds 3] [--json benchmarks/results_study.json]
        [--against /tmp/ref]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _digest(out: Path) -> str:
    """SHA-256 over every array of every NetCDF file in the results folder."""
    import xarray as xr

    h = hashlib.sha256()
    for nc in sorted(out.rglob("*.nc")):
        tree = xr.open_datatree(nc, engine="h5netcdf")
        for node in tree.subtree:
            for name, var in sorted(node.dataset.data_vars.items()):
                h.update(f"{nc.name}{node.path}{name}".encode())
                h.update(var.values.tobytes())
    return h.hexdigest()


def _stages(stdout: str) -> dict[str, float]:
    """The run's own stage table, from its last line ``time: fits 4.6 s, fits: compile 2.3 s, ...``."""
    line = [ln for ln in stdout.splitlines() if ln.startswith("time: ")][-1]
    return {k.strip(): float(v) for k, v in re.findall(r"([^,]+?) ([0-9.]+) s", line[6:])}


def run_once(compiledir: Path, out: Path, code: Path | None = None) -> dict:
    """``twinbayes run`` of the bundled example, as a user runs it, with the given compile
    directory; with ``code``, the twinbayes package of that checkout instead of this one."""
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={compiledir}", "MPLBACKEND": "Agg"}
    command = [
        sys.executable,
        "-m",
        "twinbayes.run.cli",
        "run",
        "--quiet",
        "--force",
        "--out",
        str(out),
    ]
    t0 = time.perf_counter()
    if code is not None:  # ``python -m`` imports from the working directory first
        env["PYTHONPATH"] = str(code)
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=code)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-3000:])
    timings = _stages(proc.stdout)
    timings["process (imports included)"] = wall
    return {"timings": timings, "digest": _digest(out), "outcome": proc.returncode}


def _table(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Median of each stage over the rounds, cold and warm."""
    stages = list(dict.fromkeys(s for kind in runs for rec in runs[kind] for s in rec["timings"]))
    return {
        kind: {
            s: statistics.median(rec["timings"].get(s, 0.0) for rec in runs[kind]) for s in stages
        }
        for kind in runs
    }


def _print(table: dict, rounds: int, title: str) -> None:
    print(f"\n{title:<28} {'cold (s)':>9} {'warm (s)':>9}   median of {rounds}")
    for s in table["cold"]:
        print(f"{s:<28} {table['cold'][s]:>9.1f} {table['warm'][s]:>9.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--against", type=Path, default=None, help="a checkout to compare with")
    args = ap.parse_args()
    versions = {"this": None} if args.against is None else {"reference": args.against, "this": None}
    runs = {v: {"cold": [], "warm": []} for v in versions}
    whole = "process (imports included)"
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for kind in ("cold", "warm"):
                for v, code in versions.items():
                    compiledir = Path(tmp) / f"compiledir-{v}-{r}"
                    rec = run_once(compiledir, Path(tmp) / f"out-{v}-{r}-{kind}", code)
                    runs[v][kind].append(rec)
                    print(f"round {r} {kind} {v}: {rec['timings'][whole]:.1f} s", flush=True)
    record = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "rounds": args.rounds}
    for v in versions:
        digests = {rec["digest"] for kind in runs[v] for rec in runs[v][kind]}
        table = _table(runs[v])
        _print(table, args.rounds, "stage" if v == "this" else f"stage ({args.against})")
        print(f"bit-identical cold and warm: {len(digests) == 1} ({len(digests)} digest(s))")
        record[v] = {"median_s": table, "runs": runs[v], "bit_identical": len(digests) == 1}
    if args.against is not None:
        ratios = {
            kind: statistics.median(
                a["timings"][whole] / b["timings"][whole]
                for a, b in zip(runs["this"][kind], runs["reference"][kind])
            )
            for kind in ("cold", "warm")
        }
        print(f"this / reference, whole process, median over rounds: cold {ratios['cold']:.2f}, "
              f"warm {ratios['warm']:.2f}")  # fmt: skip
        record["ratio_this_to_reference"] = ratios
        record["reference"]["path"] = str(args.against)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
