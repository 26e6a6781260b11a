"""How configs/isic_folder_cpu.py was chosen: cross-validation on the sample only (folds 0 and 1
of 5), our recipe as shipped against two variants of it and the seed's recipe.

  python -m unet_jax.sweep launch experiments/sweeps/cpu_selection.py --root workdirs/cpu_selection --parallel 2
  python -m unet_jax.compare workdirs/cpu_selection --baseline seed_cpu-fold=0 --metric threshold_jaccard,jaccard,dice
"""

from unet_jax import hyper


def get_sweep(arg=None):
  del arg
  folds = hyper.sweep('data.fold', [0, 1])
  return {
    'config': 'isic_folder_cpu',
    'overrides': {'data.dir': '../shared/data/isic_sample'},
    'runs': hyper.chain([
      hyper.product([hyper.sweep('config', ['seed_cpu', 'isic_folder_cpu']), folds]),
      hyper.product([hyper.sweep('data.resize_policy', ['stretch']), folds]),
      hyper.product([hyper.sweep('optim.lr', [1e-3]), folds]),
    ]),
  }
