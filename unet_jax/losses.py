"""Segmentation losses on logits, as means over images so they split evenly across devices.

Every loss here is a mean over the images of the batch of a per-image value. With equal
per-device batches, the mean over devices of the per-device loss is then exactly the loss of the
global batch, so `pmean` of the per-device gradients is the gradient of the global loss.
"""

import jax
import jax.numpy as jnp
import optax

LOSSES = ('bce', 'dice', 'bce_dice')
DICE_SMOOTH = 1.0


def bce_per_image(logits: jax.Array, masks: jax.Array) -> jax.Array:
  """Binary cross-entropy averaged over the pixels of each image: [N, H, W, 1] -> [N]."""
  bce = optax.sigmoid_binary_cross_entropy(logits, masks)
  return bce.reshape(bce.shape[0], -1).mean(axis=1)


def soft_dice_loss_per_image(logits: jax.Array, masks: jax.Array) -> jax.Array:
  """1 - soft Dice of each image, with +1 smoothing so an empty mask has a finite loss: [N]."""
  probs = jax.nn.sigmoid(logits).reshape(logits.shape[0], -1)
  masks = masks.reshape(masks.shape[0], -1)
  intersection = (probs * masks).sum(axis=1)
  total = probs.sum(axis=1) + masks.sum(axis=1)
  return 1.0 - (2.0 * intersection + DICE_SMOOTH) / (total + DICE_SMOOTH)


def loss_per_image(name: str, logits: jax.Array, masks: jax.Array) -> jax.Array:
  """The loss `name` ('bce', 'dice' or 'bce_dice' = their sum) of each image, in float32."""
  logits = logits.astype(jnp.float32)
  masks = masks.astype(jnp.float32)
  if name == 'bce':
    return bce_per_image(logits, masks)
  if name == 'dice':
    return soft_dice_loss_per_image(logits, masks)
  if name == 'bce_dice':
    return bce_per_image(logits, masks) + soft_dice_loss_per_image(logits, masks)
  raise ValueError(f'config.loss={name!r} is not one of {LOSSES}.')
