#!/usr/bin/env bash
# Creates (or reuses) .venv with a Python >= 3.12 and installs twinbayes into it.
# Usage: bash scripts/setup-venv.sh [extras]   e.g. "test" or "bench"
# Installs the exact versions of requirements/run.lock (or test.lock with "test").
# PyMC 6 and ArviZ 1 need Python >= 3.12; an older interpreter would silently get PyMC 5.
# "bench" makes a separate .venv-bench with Python 3.12 exactly: pystan's compiled models
# (httpstan) fail to import on 3.13 ("undefined symbol: _PyThreadState_UncheckedGet").
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
venv=.venv
want='sys.version_info >= (3, 12)'
want_text="Python >= 3.12"
candidates="python3.14 python3.13 python3.12 python3 python"
case ",$extras," in *,bench,*)
  venv=.venv-bench; want='sys.version_info[:2] == (3, 12)'; want_text="Python 3.12 (pystan needs it)"
  candidates="python3.12 python3 python" ;;
esac

is_ok() { "$1" -c "import sys; sys.exit(0 if $want else 1)" >/dev/null 2>&1; }

find_python() {
  local c
  if [ -n "${PYTHON:-}" ]; then
    is_ok "$PYTHON" && { echo "$PYTHON"; return 0; }
    echo "twinbayes setup: \$PYTHON=$PYTHON is not $want_text" >&2; return 1
  fi
  for c in $candidates; do
    if command -v "$c" >/dev/null 2>&1 && is_ok "$(command -v "$c")"; then command -v "$c"; return 0; fi
  done
  local roots=()
  command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root)/versions")
  roots+=("$HOME/.pyenv/versions" "/usr/local/bin" "/opt/python")
  for r in "${roots[@]}"; do
    for c in $(ls -d "$r"/3.1[2-9]*/bin/python3 "$r"/python3.1[2-9] 2>/dev/null | sort -rV); do
      is_ok "$c" && { echo "$c"; return 0; }
    done
  done
  return 1
}

if [ -x $venv/bin/python ] && is_ok $venv/bin/python; then
  py=$venv/bin/python
else
  base=$(find_python) || {
    echo "twinbayes setup: no $want_text found (PyMC 6 and ArviZ 1 need >= 3.12)." >&2
    echo "  Install one (e.g. 'pyenv install 3.12', or your system's python3.12 package)," >&2
    echo "  or point PYTHON at it: PYTHON=/path/to/python3.12 bash $0" >&2
    exit 1
  }
  echo "twinbayes setup: creating $venv with $base ($("$base" --version 2>&1))"
  rm -rf $venv
  "$base" -m venv $venv
  py=$venv/bin/python
  "$py" -m pip install -q --upgrade pip
fi
# Exact versions with hashes from the lock (requirements/*.lock, made by `bash scripts/lock.sh`):
# same lock, same numbers. The project itself goes in without resolving anything again.
lock=requirements/run.lock
case ",$extras," in *,test,*) lock=requirements/test.lock ;; esac
# A stamp of what was installed (lock, pyproject, extras) skips pip when nothing changed: pip's own
# check of an up-to-date venv takes ~5 s, which every run of the example would wait for. The
# editable install picks up code changes by itself.
stamp=$venv/.twinbayes-installed-$(basename "$lock" .lock)
want_stamp=$(cat "$lock" pyproject.toml <(echo "$extras") | sha256sum | cut -d' ' -f1)
# twinbayes' own bytecode, compiled here once: where the environment says PYTHONDONTWRITEBYTECODE
# (as this project's machines do), every run would otherwise compile its 16,000 lines again (~0.2 s
# of each run's start). Up-to-date files are skipped (~0.05 s); Python ignores a stale one.
compile_bytecode() { "$py" -m compileall -q twinbayes >/dev/null || true; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] && "$py" -c "import importlib.util as u, sys; sys.exit(u.find_spec('twinbayes') is None)" 2>/dev/null; then
  compile_bytecode
  exit 0
fi
rm -f "$stamp"
"$py" -m pip install -q --require-hashes -r "$lock"
"$py" -m pip install -q --no-deps -e .
case ",$extras," in *,bench,*) "$py" -m pip install -q "pystan>=3.10" ;; esac  # benchmarks only, not locked
compile_bytecode
echo "$want_stamp" > "$stamp"
