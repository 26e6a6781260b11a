"""unet-jax: U-Net lesion segmentation (ISIC 2018 Task 1) in JAX/Flax.

Importing the package stays light: nothing here imports TensorFlow, so the model and the train
step run on machines that have only JAX (see `unet_jax.models`, `unet_jax.train_step`).
"""
