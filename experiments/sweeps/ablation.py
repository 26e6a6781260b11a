"""The paper's runs as a sweep: Table 1 (the seed's recipe and ours on the scale's folds) and the
cumulative ablation's training steps, from the seed's recipe to ours, one change at a time.

  python -m unet_jax.sweep launch experiments/sweeps/ablation.py:cpu --root R --parallel 2

ARG is the scale (smoke, cpu, full; experiments/paper/scales.py). The runs are declared once, in
experiments/paper/tables.py; `python -m experiments.paper` launches the same runs (under
ROOT/table1 and ROOT/ablation) and writes the report from them.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from experiments.paper import scales, tables


def get_sweep(arg='smoke'):
  scale = scales.SCALES[arg]
  runs = tables.table1_runs(scale) + tables.ablation_runs(scale)
  return {
    'config': scale.ours,
    'runs': [{'name': run.name, **run.overrides} for run in runs],
  }
