"""The report's tables and figures, each declared once: which runs, which comparison, which figure.

Runs (each a `unet_jax.sweep_runs.Run`, launched and resumed like a sweep's):
  table1/seed-fold=K, table1/ours-fold=K    the two recipes on the scale's Table 1 folds
  ablation/NN_<change>-fold=K                the cumulative ablation's training steps 1-5 on the
                                             ablation folds (step 0 is table1/seed, step 6
                                             table1/ours, on the same folds)
Evaluations (`unet_jax.evaluate`, per run): `eval_val` with the run's own inference settings
(ours: TTA and post-processing), `eval_val_tta` with TTA alone (the ablation's step 7).

Table 1: seed against ours, per-image scores at native resolution with each recipe's own
inference settings, over the Table 1 folds (`unet_jax.compare`).
Table 2: the ablation, one change added at a time in the order of `ABLATION`, each step compared
with the one before (paired on the same images), Holm-corrected over the steps.
Figures: the seed's two figures (samples, predictions), validation curves of both recipes,
per-image distributions and the performance profile of Table 1's groups.
"""

import dataclasses
import os

from experiments.paper import scales
from unet_jax import config_files, sweep_runs

METRICS = ('threshold_jaccard', 'jaccard', 'dice')
# The cumulative ablation, from the seed's recipe to ours: (label, the config fields it changes,
# or an evaluation folder for the inference-only steps).
ABLATION = (
  ('input normalization', ('data.normalize',)),
  ('resize policy', ('data.resize_policy',)),
  ('augmentation', ('augment.enabled',)),
  ('loss', ('loss',)),
  ('optimizer and schedule', ('optim.name', 'optim.lr', 'optim.eps', 'optim.weight_decay',
                              'optim.grad_clip_norm', 'optim.schedule')),
  ('dropout', ('model.dropout_rate', 'model.dropout_levels')),
  ('test-time augmentation', 'eval_val_tta'),
  ('post-processing', 'eval_val'),
)
TRAINING_STEPS = sum(isinstance(fields, tuple) for _, fields in ABLATION)


def _run(scale: scales.Scale, name: str, overrides: dict) -> sweep_runs.Run:
  return sweep_runs.Run(name, config_files.resolve(scale.ours), {**scale.common, **overrides})


def table1_runs(scale: scales.Scale) -> list[sweep_runs.Run]:
  seed = scales.seed_overrides(scale)
  return [_run(scale, f'{recipe}-fold={fold}', {**overrides, 'data.fold': fold})
          for recipe, overrides in (('seed', seed), ('ours', {}))
          for fold in scale.table1_folds]


def ablation_overrides(scale: scales.Scale, step: int) -> dict:
  """The seed's recipe with the first `step` training changes of ABLATION undone (set to ours)."""
  overrides = dict(scales.seed_overrides(scale))
  for _, fields in ABLATION[:step]:
    if isinstance(fields, tuple):
      for field in fields:
        overrides[field] = scales.ours_value(scale, field)
  return overrides


def _slug(label: str) -> str:
  return label.replace(' ', '_')


def ablation_runs(scale: scales.Scale) -> list[sweep_runs.Run]:
  """The training steps 1..TRAINING_STEPS-1 (the first and last are Table 1's runs)."""
  return [_run(scale, f'{step:02d}_{_slug(ABLATION[step - 1][0])}-fold={fold}',
               {**ablation_overrides(scale, step), 'data.fold': fold})
          for step in range(1, TRAINING_STEPS) for fold in scale.ablation_folds]


@dataclasses.dataclass(frozen=True)
class Step:
  """A row of Table 2: its runs (workdirs) and where their per-image scores are read."""

  label: str
  workdirs: tuple[str, ...]
  evaluation: str | None  # None: the training validation's CSV (no TTA, threshold 0.5).


def ablation_steps(scale: scales.Scale, root: str) -> list[Step]:
  folds = scale.ablation_folds
  seed = tuple(os.path.join(root, 'table1', f'seed-fold={f}') for f in folds)
  ours = tuple(os.path.join(root, 'table1', f'ours-fold={f}') for f in folds)
  steps = [Step("the seed's recipe", seed, None)]
  for step, (label, fields) in enumerate(ABLATION, start=1):
    if step < TRAINING_STEPS:
      workdirs = tuple(os.path.join(root, 'ablation', f'{step:02d}_{_slug(label)}-fold={f}')
                       for f in folds)
      steps.append(Step(f'+ {label}', workdirs, None))
    elif step == TRAINING_STEPS:
      steps.append(Step(f'+ {label}', ours, None))
    else:
      steps.append(Step(f'+ {label}', ours, fields))
  return steps


FIGURES = (
  ('samples', "The seed notebook's first figure: validation photos above their masks."),
  ('predictions', "The seed's second figure, with our recipe (fold 0, the median images by "
                  "Jaccard): the photo with the truth's outline (green) and the prediction's "
                  '(orange), the truth, the prediction.'),
  ('curves', 'Validation threshold Jaccard during training (per image at native resolution, no '
             'TTA), mean over the Table 1 folds, band from the lowest to the highest fold.'),
  ('distribution', 'Per-image Jaccard of Table 1 (each recipe with its inference settings), '
                   'the 0.65 threshold, and the failure rate.'),
  ('profile', 'Performance profile of Table 1: the fraction of images with Jaccard >= t.'),
)
