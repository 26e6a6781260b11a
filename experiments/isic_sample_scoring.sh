#!/usr/bin/env bash
# A short run on real ISIC photos, scored the way the challenge scores, checked against the
# official scorer; and what the run leaves behind.
#
# Trains configs/isic_folder_tiny.py on folds 1-4 of ../shared/data/isic_sample (49 real ISIC
# images) on CPU. Its final checkpoint's per-image validation (the training loop's own, at native
# resolution) is then compared with three other ways of scoring the held-out fold 0: the official
# `isic-challenge-scoring segmentation` on the masks `unet_jax.predict --checkpoint final` wrote,
# our `unet_jax.evaluate --predictions` on the same masks, and `unet_jax.evaluate --workdir`
# (which never writes masks). All must give the same numbers to 1e-6. Then it checks the run's
# files (summary.json finished, final and best; per-image CSVs; a best checkpoint; no step-1
# checkpoint; each step once in metrics.jsonl) and predicts the sample's full-resolution photos
# with the best checkpoint. Results: experiments/results/isic_sample_scoring.md.
#
# Usage: experiments/isic_sample_scoring.sh [DATA_DIR] [OUT_DIR] [extra --config.* overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/isic_sample}
OUT=${2:-workdirs/isic_sample_scoring}
shift $(( $# > 2 ? 2 : $# ))
PY=${PYTHON:-.venv/bin/python}
SCORER=${SCORER:-$(dirname "$PY")/isic-challenge-scoring}
export TF_CPP_MIN_LOG_LEVEL=2

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)  # Orbax wants absolute checkpoint paths.
DATA=$(cd "$DATA" && pwd)
time "$PY" -m unet_jax.main --config configs/isic_folder_tiny.py --workdir "$OUT/run" \
  --config.data.dir="$DATA" "$@"

# The held-out fold's images and native masks, as folders (the official scorer wants a truth
# folder holding exactly the images it scores).
"$PY" - "$OUT" <<'PY'
import os, sys
from unet_jax import input_pipeline, run_config
out = sys.argv[1]
config = run_config.load(os.path.join(out, 'run'))
_, images, masks = input_pipeline.folder_split(config.data, 'val')
for folder, paths in (('val_images', images), ('val_truth', masks)):
  os.makedirs(os.path.join(out, folder), exist_ok=True)
  for path in paths:
    link = os.path.join(out, folder, os.path.basename(path))
    if not os.path.lexists(link):
      os.symlink(os.path.abspath(path), link)
print(f'{len(images)} held-out images')
PY

time "$PY" -m unet_jax.predict --workdir "$OUT/run" --checkpoint final \
  --input "$OUT/val_images" --output "$OUT/predictions" --overlay_dir "$OUT/overlays"
"$SCORER" -o json segmentation "$OUT/val_truth" "$OUT/predictions" > "$OUT/official.json"
"$PY" -m unet_jax.evaluate --predictions "$OUT/predictions" --truth "$OUT/val_truth" \
  --output "$OUT/eval_folder"
time "$PY" -m unet_jax.evaluate --workdir "$OUT/run" --output "$OUT/eval_run"
time "$PY" -m unet_jax.predict --workdir "$OUT/run" \
  --input "$DATA/native/ISIC2018_Task1-2_Training_Input" --output "$OUT/native_best"

"$PY" - "$OUT" <<'PY'
import json, os, sys
from PIL import Image
from unet_jax import metric_logging, native_scoring, results
out = sys.argv[1]
run = os.path.join(out, 'run')
summary = results.read_run_summary(run)
columns = {
  'official': json.load(open(os.path.join(out, 'official.json')))['macro_average'],
  'ours (folder)': results.read_json(os.path.join(out, 'eval_folder', 'summary.json'))['macro_average'],
  'ours (run)': results.read_json(os.path.join(out, 'eval_run', 'summary.json'))['macro_average'],
  'training loop': native_scoring.summarize(results.read_per_image_csv(
      os.path.join(run, summary['final']['per_image_csv'])))['macro_average'],
}
print(f'{"metric":<18}' + ''.join(f'{name:>15}' for name in columns))
worst = 0.0
for metric in native_scoring.METRICS:
  values = [c[metric] for c in columns.values()]
  print(f'{metric:<18}' + ''.join(f'{v:15.8f}' for v in values))
  worst = max(worst, *(abs(v - values[0]) for v in values))
print(f'largest difference from the official scorer: {worst:.2e}')

print(f"\nsummary.json: state {summary['state']}, final step {summary['final']['step']} "
      f"(threshold Jaccard {summary['final']['metrics']['threshold_jaccard']:.4f}), best step "
      f"{summary['best']['step']} ({summary['selection']['metric']} {summary['best']['value']:.4f})")
print('per-image CSVs:', sorted(os.listdir(os.path.join(run, 'validation'))))
steps = sorted(int(n) for n in os.listdir(os.path.join(run, 'checkpoints')))
print('checkpoints:', steps)
rows = metric_logging.read_jsonl(os.path.join(run, 'metrics.jsonl'))
logged = [r['step'] for r in rows if 'train_loss' in r]
print(f'metrics.jsonl: {len(logged)} training rows, each step once: {len(logged) == len(set(logged))}')
masks = sorted(os.listdir(os.path.join(out, 'native_best')))
sizes = [Image.open(os.path.join(out, 'native_best', m)).size for m in masks]
print(f'predict --checkpoint best on native/: {len(masks)} masks, sizes {sizes}')
ok = (worst <= 1e-6 and summary['state'] == 'finished' and summary['best']['step'] in steps
      and 1 not in steps and len(logged) == len(set(logged)))
sys.exit(0 if ok else 1)
PY
