#!/usr/bin/env bash
# Issue 4 on a lent H200: the classic U-Net (224x224, bf16) train step in JAX vs PyTorch.
#
# Run from the repository root, one part per device command (each part is sized to finish well
# inside the 10-minute limit of one command; the whole set needs about 30 minutes of device time):
#
#   run(command="bash experiments/run_gpu_benchmark.sh main-a", timeout_s=600)
#   run(command="bash experiments/run_gpu_benchmark.sh main-b", timeout_s=600)
#   run(command="bash experiments/run_gpu_benchmark.sh variants", timeout_s=600)
#   run(command="bash experiments/run_gpu_benchmark.sh flags", timeout_s=600)
#   run(command="bash experiments/run_gpu_benchmark.sh cache", timeout_s=600)
#
# Nothing needs carrying: the GPU machine has jax (CUDA), flax, optax and torch but no TensorFlow,
# ml_collections or clu, and the benchmark's train mode imports none of those (the input-pipeline
# mode needs TensorFlow, so it is measured per core on a CPU machine instead). Results (a JSON and a
# log per benchmark call) go to $OUT, which the device tool brings back (the nvidia-smi and
# version lines are printed, so they arrive in the output tail); copy them into
# experiments/results/gpu/ and the table of each log into experiments/results/benchmark_gpu.md.
#
# Parts:
#   main-a / main-b  the headline: classic U-Net ('transpose' upsampling, 74 GFLOP forward per
#                    image), bf16, batch 32,64 / 128,256; JAX and PyTorch (bf16 autocast,
#                    channels_last, torch.compile) on the same batch, one process per config.
#                    Every JAX step augments its uint8 batch on the device, as training does;
#                    main-a also times that augmentation alone (experiments/augment_cost.py).
#   variants         batch 128: 'dense_d2s' and the seed's 'resize_conv' upsampling, BatchNorm
#                    before the ReLU, and float32, each with its PyTorch twin; and JAX without
#                    the on-device augmentation (what it costs inside the step).
#   flags            batch 128, JAX only: XLA flag candidates, one process each (XLA_FLAGS is read
#                    at start), every figure kept.
#   cache            the persistent compilation cache: the same config compiled in a fresh process
#                    with an empty cache dir (cold), then again (warm).
#   torch-max        optional: PyTorch with torch.compile(mode='max-autotune') at batch 128.
#   all              every part above in sequence (for a machine without a per-command limit).
set -uo pipefail

PART=${1:?"usage: $0 main-a|main-b|variants|flags|cache|torch-max|all"}
OUT=${OUT:-experiments/results/gpu}
PY=${PYTHON:-python3}
CACHE=${JAX_CACHE_DIR:-/tmp/unet_jax_xla_cache}
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2
COMMON=(--preset h200-classic --isolate --compilation-cache "$CACHE")
# Appended to every benchmark call (later flags win): tests/gpu_script_test.py shrinks the model
# with it to run this script on CPU.
read -r -a EXTRA <<< "${BENCH_EXTRA_ARGS:-}"
read -r -a AUGMENT_COST <<< "${AUGMENT_COST_ARGS:---batch-size 128}"

bench() {  # bench NAME ARGS...: one benchmark call, its JSON and log under $OUT.
  local name=$1
  shift
  echo "=== $name: $PY -m experiments.benchmark $* (XLA_FLAGS='${XLA_FLAGS:-}')"
  "$PY" -m experiments.benchmark "$@" "${EXTRA[@]}" --out "$OUT/$name.json" 2>&1 \
    | tee "$OUT/$name.log" \
    | grep -v '^{'
}

run_part() {
  case "$1" in
    main-a)
      echo "=== augment-cost: $PY -m experiments.augment_cost ${AUGMENT_COST[*]}"
      "$PY" -m experiments.augment_cost "${AUGMENT_COST[@]}" 2>&1 | tail -3
      bench main-a "${COMMON[@]}" --upsample transpose --batch-sizes 32,64
      ;;
    main-b) bench main-b "${COMMON[@]}" --upsample transpose --batch-sizes 128,256 ;;
    variants)
      bench variants-upsample "${COMMON[@]}" --upsample dense_d2s,resize_conv --batch-sizes 128
      bench variants-before-act "${COMMON[@]}" --upsample transpose --batch-sizes 128 \
        --norm-position before_act
      bench variants-fp32 "${COMMON[@]}" --upsample transpose --batch-sizes 128 \
        --precisions float32 --matmul-size 4096
      bench variants-no-augment "${COMMON[@]}" --no-torch --upsample transpose --batch-sizes 128 \
        --no-augment
      ;;
    flags)
      local i=0 flags
      for flags in '' '--xla_gpu_enable_triton_gemm=false' \
          '--xla_gpu_enable_command_buffer=' '--xla_gpu_enable_cublaslt=true'; do
        XLA_FLAGS="$flags" bench "flags-$i" "${COMMON[@]}" --no-torch --upsample transpose \
          --batch-sizes 128 || true
        i=$((i + 1))
      done
      ;;
    cache)
      rm -rf "$CACHE-fresh"
      for run in cold warm; do
        bench "cache-$run" --preset h200-classic --no-torch --upsample transpose \
          --batch-sizes 128 --steps 5 --compilation-cache "$CACHE-fresh"
      done
      ;;
    torch-max)
      bench torch-max "${COMMON[@]}" --upsample transpose --batch-sizes 128 \
        --torch-compile max-autotune
      ;;
    *) echo "unknown part: $1" >&2; return 2 ;;
  esac
}

{
  date -Is
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv || true
  "$PY" -c 'import jax, flax, optax, torch; print(jax.__version__, jax.devices(), flax.__version__, optax.__version__, torch.__version__)'
} 2>&1  # Printed, not saved: the device tool brings back at most 8 files (the flags part has 8).

if [[ $PART == all ]]; then
  for p in main-a main-b variants flags cache torch-max; do run_part "$p"; done
else
  run_part "$PART"
fi
