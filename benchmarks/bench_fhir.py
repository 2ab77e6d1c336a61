"""Reading a large FHIR bundle (issue #19): 100 000 Observations of one patient, time and peak memory.

Builds a Bundle of one Patient, one MedicationAdministration and ``--n`` Observations (LOINC
4049-3, valueQuantity in mg/L, one per minute), writes it to a temporary file, and reads it with
``twinbayes.inputs.fhir.read_bundle`` in a fresh process: wall time and the process's peak resident
memory (``ru_maxrss``).  Run: ``.venv/bin/python benchmarks/bench_fhir.py [--n 100000] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from twinbayes.inputs.fhir import read_bundle
t1 = time.perf_counter()
p = read_bundle(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "n_obs": int(p.data.sizes["obs"]),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bundle(n: int) -> dict:
    t0 = datetime(2024, 1, 1, 8, tzinfo=UTC)
    entries = [
        {"resource": {"resourceType": "Patient", "id": "bench"}},
        {"resource": {
            "resourceType": "MedicationAdministration", "id": "d0", "status": "completed",
            "effectiveDateTime": t0.isoformat(),
            "dosage": {"route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006"}]},
                       "dose": {"value": 320, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}},
        }},
    ]  # fmt: skip
    for i in range(n):
        entries.append({"fullUrl": f"urn:uuid:obs-{i}", "resource": {
            "resourceType": "Observation", "id": f"obs-{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4049-3",
                                 "display": "Theophylline [Mass/volume] in Serum or Plasma"}]},
            "subject": {"reference": "Patient/bench"},
            "effectiveDateTime": (t0 + timedelta(minutes=i + 1)).isoformat(),
            "valueQuantity": {"value": 10.0 + (i % 97) / 10, "unit": "mg/L",
                              "system": "http://unitsofmeasure.org", "code": "mg/L"},
        }})  # fmt: skip
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp()) / "bundle.json"
    path.write_text(json.dumps(bundle(args.n)))
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], check=True, capture_output=True, text=True
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result |= {
        "observations": args.n,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "machine": platform.platform(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
