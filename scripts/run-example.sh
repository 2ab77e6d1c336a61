#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv, then fit the bundled example twins
# (oral PK specs, Theophylline subject 1) and write results/example/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
exec .venv/bin/twinbayes run --force --out results/example "$@"
