#!/usr/bin/env bash
# The GPU check: what a lent GPU session measures, in two device calls of about 6.5 minutes.
#
#   run(command="bash experiments/gpu_check.sh", timeout_s=450)
#   # A second call, with the first call's files copied to experiments/results/gpu/<date>/,
#   # runs only the parts still missing:
#   run(command="GPU_CHECK_DONE=experiments/results/gpu/<date> bash experiments/gpu_check.sh",
#       timeout_s=450)
#
# Parts, in priority order, each in its own process (JAX preallocates GPU memory, so PyTorch
# never shares a process with it) with its own timeout, each writing its JSON under $OUT as soon
# as it ends (8 files at most, what the device tool brings back). Nothing runs past the call's
# deadline (GPU_CHECK_DEADLINE seconds, default 380): a part starts only if about one of its
# configurations fits in the time left, and a benchmark part stopped by the deadline keeps the
# configurations it finished, for the next call to complete:
#   machine       nvidia-smi's name, memory and driver; jax, jaxlib, flax, optax, torch versions
#   jax-aug       the seed's model (configs/seed.py: 31.0M parameters), 224 x 224, bf16, the real
#                 train step with the on-device augmentation: images/s at batch 64 and 128,
#                 first-step compile time, MFU against a bf16 matmul timed in the same process,
#                 peak device memory, and where 3 traced steps spend their device time
#                 (convolutions, fusions, ...: unet_jax/device_profile.py), which says what
#                 the speed work should change first
#   jax-noaug     the same without the augmentation (the equal-work comparison with PyTorch)
#   torch         its PyTorch twin at batch 128 (bf16 autocast, channels_last, torch.compile;
#                 eager, marked so in its row and the table, if torch.compile fails)
#   b256          batch 256 with the augmentation, on cards of 60,000 MiB or more (it took
#                 39.2 GiB on an H200, and JAX takes 75% of the card); skipped with a note elsewhere
#   upsample      the other upsampling forms ('transpose', 'dense_d2s') at batch 128
#   restart       a warm restart through the persistent compilation cache: process start to
#                 first step done, imports included, cold (a run's start, which then saves a
#                 checkpoint), warm (the run resumed: it restores that checkpoint), and warm
#                 again with the backend started in a thread beside the imports
#   determinism   two identical steps from one state with XLA's deterministic ops: bit-identical?
#                 and 10 steps timed with them (against jax-aug's batch 64: what they cost)
# A short table is printed last (experiments/gpu_table.py, which also probes the machine).
# Nothing needs carrying: the GPU machine has jax, flax, optax, orbax-checkpoint and torch, and
# nothing here imports TensorFlow.
#
# Compile times are cold: the benchmark parts use no persistent compilation cache (a second call
# on a still-warm machine would otherwise load what the first compiled); the restart part
# measures the cache on its own. A part counts as done for GPU_CHECK_DONE only when its JSON says
# it finished ("complete" is not false): one cut short by its time limit keeps the rows it
# measured, and the next call measures only the configurations it lacks (--resume-from).
# Record the files in experiments/results/gpu/<date>/ and the table in
# experiments/results/benchmark_gpu.md.
#
# The same script measures the speed work's variants (experiments/results/benchmark_gpu.md), each
# into its own folder, against a baseline measured in the same call:
#   GPU_CHECK_PARTS   the parts to run, by name (default: all of them, in the order above)
#   GPU_CHECK_ARGS    extra flags for every benchmark part (a variant: '--norm-position
#                     before_act'; tests/gpu_check_test.py shrinks the model with them to run on
#                     a CPU); XLA_FLAGS reaches every part as it is
#   GPU_CHECK_PROBE_ARGS  likewise for the two probes
#   GPU_CHECK_B256=1  run batch 256 whatever the card's memory (a full run on a CPU)
#   GPU_CHECK_MIN_S   start any part with this much time left (default: each part's own,
#                     60-140 s; the CPU test makes it small to cut a part short)
# Each part's time (the least to start it, the most it may run) is what it took on an H200
# (2026-11-30): a JAX configuration 65-85 s (a cold compile of about 60 s; 107 s at batch 256),
# PyTorch 70 s, the restart 87 s (two runs then; its third adds about 11), determinism 50 s;
# the whole check about 13 minutes.
# e.g. run(command="export GPU_CHECK_PARTS=jax-aug; OUT=$OUT/base bash experiments/gpu_check.sh;
#          XLA_FLAGS=--xla_gpu_use_runtime_fusion=true OUT=$OUT/fusion bash experiments/gpu_check.sh")
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-workdirs/gpu_check}
DONE=${GPU_CHECK_DONE:-}
DEADLINE=${GPU_CHECK_DEADLINE:-380}
PY=${PYTHON:-python3}
CACHE=${GPU_CHECK_CACHE:-/tmp/unet_jax_gpu_check_restart_cache}  # The restart part's only.
PARTS=" ${GPU_CHECK_PARTS:-machine jax-aug jax-noaug torch b256 upsample restart determinism} "
read -r -a EXTRA <<< "${GPU_CHECK_ARGS:-}"
read -r -a PROBE <<< "${GPU_CHECK_PROBE_ARGS:-}"
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
SEED_MODEL=(--preset h200-classic --upsample resize_conv --head seed --precisions bfloat16
            --steps 20 --warmup 3 --compilation-cache '')
START=$SECONDS
SKIPPED=()

part() {  # part NAME MIN_S BUDGET_S COMMAND...: run unless done earlier or past the deadline.
  # It starts if MIN_S (about one configuration's time) is left before the deadline, and runs
  # for BUDGET_S at most, or what is left if less: a benchmark part cut short keeps the
  # configurations it finished ("complete": false) and the next call measures the others.
  local name=$1 min=${GPU_CHECK_MIN_S:-$2} budget=$3
  shift 3
  if [[ $PARTS != *" $name "* ]]; then
    echo "--- $name: not asked for (GPU_CHECK_PARTS)"
    return
  fi
  if [[ -n $DONE && -f $DONE/$name.json ]]; then
    if "$PY" -c "import json,sys; sys.exit(json.load(open(sys.argv[1])).get('complete') is False)" \
        "$DONE/$name.json" 2>/dev/null; then
      echo "--- $name: measured by an earlier call ($DONE/$name.json), skipped"
      return
    fi
    echo "--- $name: the earlier call's $DONE/$name.json was cut short; measuring what it lacks"
    set -- "$@" --resume-from "$DONE/$name.json"  # Only benchmark parts write partial files.
  fi
  local left=$((DEADLINE - (SECONDS - START)))
  if (( left < min )); then
    echo "--- $name: not started, $left s left before the deadline and it needs $min s or more"
    SKIPPED+=("$name")
    return
  fi
  local limit=$(( left < budget ? left : budget ))
  echo "=== $name (at most $limit s): $*"
  local began=$SECONDS
  timeout --kill-after=15 "$limit" "$@" > "$OUT/$name.log.txt" 2>&1
  local status=$?
  tail -n "$( ((status)) && echo 30 || echo 4)" "$OUT/$name.log.txt"  # More of a failure's.
  rm -f "$OUT/$name.log.txt"  # The JSON holds the results; 8 files come back at most.
  echo "--- $name: exit status $status after $((SECONDS - began)) s"
  if (( (status == 124 || status == 137) && limit < budget )); then
    SKIPPED+=("$name")  # Stopped by the deadline, not by its own budget: the next call goes on.
  fi
}

big_card() {  # Whether batch 256 fits: 39.2 GiB on an H200, in JAX's 75% of the card (an H100's).
  "$PY" -c "import json,sys; m=json.load(open(sys.argv[1])).get('gpu_memory','0 MiB'); \
sys.exit(0 if int(m.split()[0]) >= 60_000 else 1)" "${DONE:-$OUT}/machine.json" 2>/dev/null
}

part machine 60 60 "$PY" experiments/gpu_table.py --machine "$OUT/machine.json"
part jax-aug 90 210 "$PY" -m experiments.benchmark "${SEED_MODEL[@]}" --frameworks jax \
  --batch-sizes 64,128 --profile-steps 3 --isolate "${EXTRA[@]}" --out "$OUT/jax-aug.json"
part jax-noaug 75 180 "$PY" -m experiments.benchmark "${SEED_MODEL[@]}" --frameworks jax \
  --batch-sizes 64,128 --no-augment --isolate "${EXTRA[@]}" --out "$OUT/jax-noaug.json"
part torch 100 150 env JAX_PLATFORMS=cpu "$PY" -m experiments.benchmark "${SEED_MODEL[@]}" \
  --frameworks torch --batch-sizes 128 "${EXTRA[@]}" --out "$OUT/torch.json"
if big_card || [[ ${GPU_CHECK_B256:-} == 1 ]]; then
  part b256 140 180 "$PY" -m experiments.benchmark "${SEED_MODEL[@]}" --frameworks jax \
    --batch-sizes 256 --isolate "${EXTRA[@]}" --out "$OUT/b256.json"
elif [[ $PARTS == *" b256 "* ]]; then
  echo "--- b256: skipped, the card has under 60,000 MiB and batch 256 took 39.2 GiB on an H200"
  echo '{"skipped": "the card has under 60,000 MiB; batch 256 took 39.2 GiB on an H200"}' \
    > "$OUT/b256.json"
fi
part upsample 80 200 "$PY" -m experiments.benchmark "${SEED_MODEL[@]}" --frameworks jax \
  --upsample transpose,dense_d2s --batch-sizes 128 --isolate "${EXTRA[@]}" \
  --out "$OUT/upsample.json"
part restart 100 150 "$PY" -m experiments.gpu_probes restart --cache "$CACHE" \
  "${PROBE[@]}" --out "$OUT/restart.json"
part determinism 75 120 "$PY" -m experiments.gpu_probes determinism --deterministic \
  "${PROBE[@]}" --out "$OUT/determinism.json"

if (( ${#SKIPPED[@]} )); then
  echo "Not run, or cut short by the deadline, this call: ${SKIPPED[*]}." \
       "Run again with GPU_CHECK_DONE=<this call's files>."
fi
"$PY" experiments/gpu_table.py "$OUT" ${DONE:+"$DONE"}
