#!/usr/bin/env bash
# The test suite on a fresh machine: set up .venv with test extras, then run pytest.
# Extra arguments go to pytest (e.g. -m slow for the long recovery studies).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh test
# the 25 slowest tests are listed at the end: the default run must stay under 20 min on 2 cores
exec .venv/bin/python -m pytest -n 2 --durations=25 "$@"
