"""The seed Keras notebook's recipe, exactly.

Classic U-Net (64 to 1024 filters, BatchNorm after each ReLU, dropout 0.5 on the last encoder
level and the bottleneck, nearest upsampling + 2x2 conv, 3x3 conv to 2 channels then 1x1 conv to
one output): 31,044,617 trainable parameters and 11,780 BatchNorm statistics. Images stretched to
224x224 with raw 0-255 inputs, binary cross-entropy, Adam at a constant 1e-4, batch 16, 5 folds
of the training set with fold 0 for validation.

Only what differs from configs/default.py is set here; the rest of the recipe (224 px, 'stretch',
the classic U-Net of depth 4 and width 64 with BatchNorm after each ReLU, dropout 0.5 on levels 3
and 4, nearest upsampling + conv, batch 16, 5 folds with fold 0 validating) is the default's.

The data part reads ISIC 2018 Task 1 through the TFDS dataset (`isic2018_task1/224`, prepared on
first use; see unet_jax/isic2018.py) and makes the seed's split of the official training set: 5
folds by a fixed seed, fold 0 validates. To read an unpacked folder instead:
`--config.data.source=folder --config.data.dir=PATH`.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'isic'
  config.data.normalize = 'none'  # Raw 0..255 pixels, as the notebook fed them.
  config.augment.enabled = False  # The notebook trained on the images as they are.
  config.model.head = 'seed'  # 3x3 conv to 2 channels, then 1x1 conv to one.

  config.loss = 'bce'
  config.optim.name = 'adam'
  config.optim.lr = 1e-4
  config.optim.eps = 1e-7  # Keras' Adam epsilon.
  config.optim.weight_decay = 0.0
  config.optim.grad_clip_norm = 0.0
  config.optim.schedule = 'constant'
  # The notebook's epoch count is not part of the recipe we reproduce; we train 30 epochs:
  # 2075 training images (4 of 5 folds) at batch 16 are 130 steps an epoch.
  config.num_train_steps = 3900
  config.eval.every_steps = 1300  # Every 10 epochs, per image at native resolution.
  config.eval.pooled_every_steps = 130  # Once an epoch, as the notebook's Keras validation.
  config.checkpoint_every_steps = 650
  return config
