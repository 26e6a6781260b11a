"""Progressive resizing as one sweep: what starting from a low-resolution run buys.

For each of 5 folds, three runs of the config CONFIG (S px, N steps):
  pre-fold=k          S/2 px, N steps (a quarter of the pixels per step)
  progressive-fold=k  S px, N/2 steps, started from pre-fold=k's final parameters
                      (config.init_from; the launcher starts it once pre-fold=k has finished)
  progressive_low_lr-fold=k  the same at a tenth of the config's peak learning rate (the
                      schedule starts afresh: warm-up to the peak, then its decay)
  short-fold=k        S px, N/2 steps from scratch: the same steps without the pre-training
Compare them with the config's own N-step runs at S px (e.g. the CPU-scale report's
`ours-fold=*`):

  python -m unet_jax.sweep launch experiments/sweeps/progressive.py:isic_folder_cpu \\
      --root workdirs/progressive --set data.dir=../shared/data/isic_sample --parallel 2
  python -m unet_jax.compare workdirs/paper_cpu/table1/ours-fold=* \\
      workdirs/progressive/progressive*-fold=* workdirs/progressive/short-fold=*

ARG is the config: a preset name or a file (its data.image_size and num_train_steps are read).
"""

from unet_jax import config_files, hyper


def get_sweep(arg=None):
  if not arg:
    raise ValueError('progressive needs the config: experiments/sweeps/progressive.py:CONFIG')
  fields = config_files.values(config_files.resolve(arg, 'progressive.py:CONFIG'))
  size, steps, lr = fields['data.image_size'], fields['num_train_steps'], fields['optim.lr']
  folds = hyper.sweep('data.fold', range(5))
  return {
    'config': arg,
    'overrides': {'data.num_folds': 5},
    'runs': [
        *({'name': f'pre-fold={run["data.fold"]}', **run, 'data.image_size': size // 2}
          for run in folds),
        *({'name': f'progressive-fold={run["data.fold"]}', **run, 'num_train_steps': steps // 2,
           'init_from.workdir': f'pre-fold={run["data.fold"]}'} for run in folds),
        *({'name': f'progressive_low_lr-fold={run["data.fold"]}', **run,
           'num_train_steps': steps // 2, 'optim.lr': lr / 10,
           'init_from.workdir': f'pre-fold={run["data.fold"]}'} for run in folds),
        *({'name': f'short-fold={run["data.fold"]}', **run, 'num_train_steps': steps // 2}
          for run in folds),
    ],
  }
