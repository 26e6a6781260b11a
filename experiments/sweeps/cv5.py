"""The 5 folds of any config: k-fold cross-validation as a sweep (nnU-Net's unit of comparison).

  python -m unet_jax.sweep launch experiments/sweeps/cv5.py:isic_folder_tiny --root R \\
      --set data.dir=../shared/data/isic_sample --parallel 2
  python -m unet_jax.compare R        # the cross-validation summary, with confidence intervals

ARG is the config: a preset name or a file.
"""

from unet_jax import hyper


def get_sweep(arg=None):
  if not arg:
    raise ValueError('cv5 needs the config: experiments/sweeps/cv5.py:CONFIG')
  return {
    'config': arg,
    'overrides': {'data.num_folds': 5},
    'runs': hyper.sweep('data.fold', range(5)),
  }
