#!/usr/bin/env bash
# The smoke sweep end to end, as the README's "Experiments" section describes it: launched with 2
# runs at once, stopped with SIGTERM as soon as its first run has finished, launched again (the
# finished runs are not trained again, the stopped ones resume), then `status` and `compare`.
# Results: experiments/results/smoke_sweep.md.
#
# Usage: bash experiments/smoke_sweep.sh [ROOT] [COMPARISON_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-workdirs/smoke}
OUT=${2:-workdirs/smoke_comparison}
PY=${PYTHON:-.venv/bin/python}
rm -rf "$ROOT" "$OUT"

"$PY" -m unet_jax.sweep launch experiments/sweeps/smoke.py --root "$ROOT" --parallel 2 &
LAUNCHER=$!
until grep -q '"state": "finished"' "$ROOT/sweep.json" 2>/dev/null; do sleep 1; done
kill -TERM "$LAUNCHER"
set +e; wait "$LAUNCHER"; echo "first launch: exit status $?"; set -e
grep -o '"[a-z_=0-9-]*": {[^}]*"state": "[a-z]*"' "$ROOT/sweep.json" | sed 's/"hash.*"state"/ state/' || true

time "$PY" -m unet_jax.sweep launch experiments/sweeps/smoke.py --root "$ROOT" --parallel 2
for run in "$ROOT"/*/; do
  echo "$(basename "$run"): launched $(grep -c '^=== ' "$run/log.txt") time(s)"
done
"$PY" -m unet_jax.sweep status --root "$ROOT"
"$PY" -m unet_jax.compare "$ROOT" --out "$OUT"
