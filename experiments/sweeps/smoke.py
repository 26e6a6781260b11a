"""The smoke sweep: 2 configs x 2 seeds of a tiny U-Net on the synthetic data.

Each run is well under a minute on 2 CPU cores. The two configs differ in their loss (the seed
notebook's BCE against our BCE + Dice); the seeds change initialization, data order and
augmentation, not the validation images (the synthetic data has its own seed), so the runs of a
config score the same images under the same ids and compare pairwise.

  python -m unet_jax.sweep launch experiments/sweeps/smoke.py --root workdirs/smoke --parallel 2
"""

from unet_jax import hyper

# A tiny run: 64 synthetic images at 32 px, 120 steps; validated on the same 32 images each time.
TINY = {
  'data.image_size': 32, 'data.synthetic_size': 48, 'data.num_examples': 160,
  'model.depth': 2, 'model.base_width': 8, 'batch_size': 8, 'num_train_steps': 120,
  'log_every_steps': 20, 'checkpoint_every_steps': 60, 'max_checkpoints_to_keep': 1,
  'optim.warmup_steps': 20, 'eval.batch_size': 16, 'eval.every_steps': 60,
  'eval.pooled_every_steps': 60,
}


def get_sweep(arg=None):
  del arg
  return {
    'config': 'quickstart',
    'overrides': TINY,
    'runs': hyper.product([hyper.sweep('loss', ['bce', 'bce_dice']), hyper.sweep('seed', [0, 1])]),
  }
