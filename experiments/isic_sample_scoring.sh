#!/usr/bin/env bash
# Native-resolution scoring on real ISIC images, checked against the official scorer.
#
# Trains configs/isic_folder_tiny.py on folds 1-4 of /work/shared/data/isic_sample (49 real
# ISIC images) on CPU, predicts fold 0 with unet_jax.predict, then scores the prediction folder
# three ways: the official `isic-challenge-scoring segmentation`, our `unet_jax.evaluate
# --predictions`, and our `unet_jax.evaluate --workdir` (which never writes masks). All three must
# give the same threshold Jaccard to 1e-6. Results: experiments/results/isic_sample_scoring.md.
#
# Usage: experiments/isic_sample_scoring.sh [DATA_DIR] [OUT_DIR] [extra --config.* overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-/work/shared/data/isic_sample}
OUT=${2:-workdirs/isic_sample_scoring}
shift $(( $# > 2 ? 2 : $# ))
PY=${PYTHON:-.venv/bin/python}
SCORER=${SCORER:-$(dirname "$PY")/isic-challenge-scoring}
export TF_CPP_MIN_LOG_LEVEL=2

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)  # Orbax wants absolute checkpoint paths.
time "$PY" -m unet_jax.main --config configs/isic_folder_tiny.py --workdir "$OUT/run" \
  --config.data.dir="$DATA" "$@"

# The held-out fold's images and native masks, as folders (the official scorer wants a truth
# folder holding exactly the images it scores).
"$PY" - "$OUT" <<'PY'
import os, sys
from unet_jax import inference, input_pipeline
out = sys.argv[1]
config = inference.load_config(os.path.join(out, 'run'))
_, images, masks = input_pipeline.folder_split(config.data, 'val')
for folder, paths in (('val_images', images), ('val_truth', masks)):
  os.makedirs(os.path.join(out, folder), exist_ok=True)
  for path in paths:
    link = os.path.join(out, folder, os.path.basename(path))
    if not os.path.lexists(link):
      os.symlink(os.path.abspath(path), link)
print(f'{len(images)} held-out images')
PY

time "$PY" -m unet_jax.predict --workdir "$OUT/run" --input "$OUT/val_images" \
  --output "$OUT/predictions" --overlay_dir "$OUT/overlays"
"$SCORER" -o json segmentation "$OUT/val_truth" "$OUT/predictions" > "$OUT/official.json"
"$PY" -m unet_jax.evaluate --predictions "$OUT/predictions" --truth "$OUT/val_truth" \
  --output "$OUT/eval_folder"
time "$PY" -m unet_jax.evaluate --workdir "$OUT/run" --output "$OUT/eval_run"

"$PY" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
official = json.load(open(os.path.join(out, 'official.json')))['macro_average']
folder = json.load(open(os.path.join(out, 'eval_folder', 'summary.json')))['macro_average']
run = json.load(open(os.path.join(out, 'eval_run', 'summary.json')))['macro_average']
print(f'{"metric":<18} {"official":>12} {"ours (folder)":>14} {"ours (run)":>12}')
worst = 0.0
for metric in ('threshold_jaccard', 'jaccard', 'dice', 'accuracy', 'sensitivity', 'specificity'):
  print(f'{metric:<18} {official[metric]:12.8f} {folder[metric]:14.8f} {run[metric]:12.8f}')
  worst = max(worst, abs(official[metric] - folder[metric]), abs(official[metric] - run[metric]))
print(f'largest difference from the official scorer: {worst:.2e}')
sys.exit(0 if worst <= 1e-6 else 1)
PY
