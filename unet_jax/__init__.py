"""unet-jax: U-Net lesion segmentation (ISIC 2018 Task 1) in JAX/Flax.

Importing the package stays light: nothing here imports TensorFlow, so the model and the train
step run on machines that have only JAX (see `unet_jax.models`, `unet_jax.train_step`).
"""

import contextlib
import os

# TensorFlow's C++ start-up notices (CPU instruction sets, absl's log set-up) are noise in every
# command's output; a value the user set wins.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Registers the `isic2018_task1` TFDS builder, so `tfds.load('isic2018_task1/256')` finds it.
# `tensorflow_datasets` imports TensorFlow lazily, so this keeps the package TF-free; machines
# with only JAX (no TFDS) skip it.
with contextlib.suppress(ImportError):
  from unet_jax import isic2018  # noqa: F401
