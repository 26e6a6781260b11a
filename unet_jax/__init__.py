"""unet-jax: U-Net lesion segmentation (ISIC 2018 Task 1) in JAX/Flax.

Importing the package stays light: nothing here imports TensorFlow or TFDS, so the model and the
train step run on machines that have only JAX (see `unet_jax.models`, `unet_jax.train_step`), and
a command that needs neither (a finished run's metrics, `sweep --help`) is done in 0.2 s, where
TFDS's import took it to 0.5-0.6 s (2-core CPU). The `isic2018_task1` TFDS builder is registered
by importing `unet_jax.isic2018`, which the 'isic' data source and `unet_jax.prepare_isic` do.
"""

import os

# TensorFlow's C++ start-up notices (CPU instruction sets, absl's log set-up) are noise in every
# command's output; a value the user set wins.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# On CPUs with AVX512_VNNI, AVX512_BF16 or AMX, TensorFlow turns its oneDNN kernels on by itself,
# and says so on stderr at every start in a line that TF_CPP_MIN_LOG_LEVEL does not silence
# (TF 2.21). Off, the input pipeline computes the same way on every x86 machine; it uses no op
# that oneDNN speeds up much (decoding, resizing). A value the user set wins.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
