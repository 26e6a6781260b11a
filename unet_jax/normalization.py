"""How raw 0..255 pixels become model inputs (`config.data.normalize`).

Plain arithmetic with numpy constants, so one function serves numpy (inference), TensorFlow
(evaluation batches) and jax.numpy (the train step, which normalizes after augmenting on the
device). No TensorFlow or jax import here.
"""

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
MODES = ('none', 'unit', 'imagenet')


def check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f'config.data.normalize={mode!r} is not one of {MODES}.')


def normalize(image, mode: str):
  """Maps raw 0..255 pixels (float) to the model's input range."""
  check_mode(mode)
  if mode == 'none':
    return image
  if mode == 'unit':
    return image / np.float32(255.0)
  return (image / np.float32(255.0) - IMAGENET_MEAN) / IMAGENET_STD
