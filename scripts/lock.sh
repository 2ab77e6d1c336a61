#!/usr/bin/env bash
# Re-resolves the lock files from pyproject.toml (exact versions with hashes, for Python >= 3.12
# on every platform): requirements/run.lock (the library and CLI) and requirements/test.lock
# (plus the test extras). Run after changing dependencies; commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-uv}
command -v "$uv" >/dev/null 2>&1 || uv=.venv/bin/uv
for target in run test; do
  extra=(); [ "$target" = test ] && extra=(--extra test)
  "$uv" pip compile pyproject.toml "${extra[@]}" --universal --python-version 3.12 --generate-hashes \
    --no-header -q -o "requirements/$target.lock"
done
