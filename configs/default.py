"""The full training recipe: every knob a run has, with the defaults we recommend.

Other configs import this one and override fields, so a field that exists anywhere exists here.
Any field can be overridden from the command line, e.g. `--config.optim.lr=3e-4`; the config is
locked, so a misspelt field is an error that names it.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Data. `source` picks where examples come from: 'synthetic' (built in, no download),
  # 'folder' (images + masks found by a naming pattern under `dir`) or 'isic' (the ISIC 2018
  # Task 1 TFDS dataset, `unet_jax/isic2018.py`, downloaded and prepared on first use).
  config.data = ml_collections.ConfigDict()
  config.data.source = 'synthetic'
  config.data.image_size = 224  # Training resolution (square), in pixels.
  # How an image of any aspect becomes S x S (unet_jax/resize_policy.py): 'stretch' (the seed's
  # way, distorts the aspect), 'pad' (long side S, zero-padded) or 'crop' (short side S; random
  # S x S crops in training, the central one in periodic evaluation).
  config.data.resize_policy = 'stretch'
  # How raw 0..255 pixels reach the model: 'none' (raw, as the seed notebook), 'unit' (/255),
  # 'imagenet' (/255 then ImageNet mean/std).
  config.data.normalize = 'unit'
  config.data.cache = True  # Cache decoded, resized examples in memory before augmentation.
  # Synthetic source: how many examples, the size they are drawn at before resizing, and the
  # seed that draws them (the data's own: runs of any config.seed see the same images). They are
  # split into train/val by the k-fold fields below, like a folder.
  config.data.num_examples = 2560
  config.data.synthetic_size = 256
  config.data.synthetic_seed = 0
  # Folder source: images `<dir>/<image_dir>/<id><image_ext>`, masks
  # `<dir>/<mask_dir>/<id><mask_suffix>` (defaults follow the ISIC 2018 archive layout).
  config.data.dir = ''
  config.data.image_dir = 'ISIC2018_Task1-2_Training_Input'
  config.data.mask_dir = 'ISIC2018_Task1_Training_GroundTruth'
  config.data.image_ext = '.jpg'
  config.data.mask_suffix = '_segmentation.png'
  # ISIC source: TFDS data directory ('' = TFDS's default, ~/tensorflow_datasets; the archives
  # can be put in <dir>/downloads/manual/), and what validates: 'kfold' (fold `fold` of the
  # official training split, below) or 'validation' (the official 100-image validation split).
  config.data.tfds_data_dir = ''
  config.data.val_split = 'kfold'
  # k-fold split of a folder's (or ISIC's training, or the synthetic) examples by a fixed seed:
  # fold `fold` of `num_folds` validates.
  config.data.num_folds = 5
  config.data.fold = 0
  config.data.split_seed = 0

  # Joint image/mask augmentation, done on the accelerator inside the train step
  # (unet_jax/augment.py), keyed by seed, step and position in the batch. Zero or False turns a
  # part off.
  config.augment = ml_collections.ConfigDict()
  config.augment.enabled = True
  config.augment.flip = True  # Horizontal and vertical flips.
  config.augment.rot90 = True  # Random multiple of 90 degrees.
  config.augment.min_scale = 0.6  # Random crop of [min_scale, 1] of the area, resized back.
  config.augment.brightness = 0.1  # Max delta, as a fraction of the 0..255 range.
  config.augment.contrast = 0.2  # Contrast factor drawn from [1 - c, 1 + c].
  config.augment.hue = 0.02  # Max hue rotation (YIQ chroma plane), as a fraction of a turn.

  # Model: see unet_jax/models.py for what each field means.
  config.model = ml_collections.ConfigDict()
  config.model.depth = 4  # Number of 2x2 poolings; the bottleneck sits below the last one.
  config.model.base_width = 64  # Filters at the top level; doubles with each level.
  config.model.norm = 'batch'  # 'batch' | 'group' | 'none'
  config.model.norm_position = 'after_act'  # 'after_act' (seed) | 'before_act'
  config.model.group_norm_groups = 8
  config.model.dropout_rate = 0.5
  config.model.dropout_levels = (3, 4)  # Encoder levels (0 = top, depth = bottleneck).
  config.model.upsample = 'resize_conv'  # 'resize_conv' (seed) | 'transpose' | 'dense_d2s'
  config.model.head = 'linear'  # 'linear' (1x1 conv) | 'seed' (3x3 conv to 2 + 1x1 conv)

  config.loss = 'bce_dice'  # 'bce' | 'dice' | 'bce_dice'

  # Start from another run's parameters and BatchNorm statistics instead of a random init
  # (fine-tuning on other data, progressive resizing: the U-Net is fully convolutional, so a run
  # at 128 starts one at 224). The optimizer state, the schedule and the step start afresh. Read
  # only when this workdir has no checkpoint yet: a resume continues from its own. The source's
  # model fields must give the same parameter shapes; its validation images may be this run's
  # training images (or the reverse): choose the source's data and fold with that in mind.
  config.init_from = ml_collections.ConfigDict()
  config.init_from.workdir = ''  # '' (random init) or a run's workdir.
  config.init_from.checkpoint = 'final'  # 'final' | 'best' | 'latest' | a step number, e.g. '4000'

  # Optimizer and schedule.
  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adamw'  # 'adam' | 'adamw' | 'sgd'
  config.optim.lr = 1e-3  # Peak learning rate.
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8  # adam/adamw epsilon (Keras' default is 1e-7).
  config.optim.momentum = 0.9  # sgd only.
  config.optim.nesterov = True  # sgd only.
  config.optim.weight_decay = 1e-4  # adamw/sgd; never applied to biases or norm parameters.
  config.optim.grad_clip_norm = 1.0  # Global-norm clipping; 0 disables.
  config.optim.schedule = 'warmup_cosine'  # 'constant' | 'warmup_cosine' | 'step'
  config.optim.warmup_steps = 500
  config.optim.end_lr_factor = 0.01  # warmup_cosine: final lr = lr * end_lr_factor.
  config.optim.step_boundaries = (0.6, 0.85)  # step: fractions of num_train_steps...
  config.optim.step_factor = 0.1  # ...at each of which the lr is multiplied by this.

  config.batch_size = 16  # Global batch, over all devices and processes.
  config.num_train_steps = 20_000
  config.log_every_steps = 50  # The logged training loss is the mean over these steps.
  config.checkpoint_every_steps = 1000
  config.max_checkpoints_to_keep = 3  # The last K; the best checkpoint is kept besides them.
  # Trace this many train steps with jax.profiler, right after the first (compiling) step of
  # each session: the trace goes to <workdir>/plugins/profile/ (TensorBoard's Profile tab, with
  # `pip install tensorboard-plugin-profile`), and where the steps' device time went, by kind of
  # operation, to <workdir>/device_profile.json and the log. 0: no trace. The traced steps end
  # with one wait for the device, so the first logging window's images/s reads a little low.
  config.profile_steps = 0

  # Validation during training, two passes named for what they are:
  #  - `val_<metric>`: per image, at the mask's native resolution, over the whole image (every
  #    tile of the 'crop' policy, the content box of 'pad'), macro-averaged over images: the
  #    challenge's numbers (unet_jax/evaluation.py). Each run keeps the per-image CSV of every
  #    such pass. It costs about 0.1 s per full-size ISIC photo on one CPU core, half of it the
  #    native-resolution resize (experiments/results/native_validation_cost.md): ~1 min per fold
  #    (519 photos) on one core, ~8 s on a 16-core GPU host, where 1000 training steps take
  #    ~8 s at 2,000 images/s. Every 5000 steps keeps it near 10-20% of a GPU run's time.
  #  - `val_pooled_<metric>`: one cheap pass at S x S with pixel counts pooled over the split
  #    ('crop': the central S x S window only). Not the challenge's number.
  # Both also run at the last step. 0 turns a periodic pass off.
  config.eval = ml_collections.ConfigDict()
  config.eval.every_steps = 5000
  config.eval.pooled_every_steps = 500
  config.eval.batch_size = 16  # Images (pooled) or tiles (native) per forward pass.
  # Native metrics logged (names from unet_jax/native_scoring.py; all are in the CSVs).
  config.eval.metrics = ('threshold_jaccard', 'jaccard', 'dice', 'sensitivity', 'specificity',
                         'accuracy')
  # What picks the best checkpoint (kept beside the last K): a native metric, or 'pooled_<m>'
  # for the pooled pass. Selected on the validation split, so a number reported on that split
  # for the best checkpoint is optimistic.
  config.eval.best_metric = 'threshold_jaccard'
  # Validate with config.inference below (TTA, threshold, post-processing) instead of a plain
  # 0.5 threshold of one view: closer to what predict submits, at TTA's cost.
  config.eval.use_inference = False

  # How predict and evaluate turn probabilities into masks (their flags override these; a
  # threshold tuned by `evaluate --tune-threshold` is recorded in the workdir and used by both).
  config.inference = ml_collections.ConfigDict()
  config.inference.tta = 'none'  # 'none' | 'flips' (4 views) | 'dihedral' (the 8 of training)
  config.inference.threshold = 0.5  # Lesion where the probability >= this.
  config.inference.largest_component = False  # Keep only the largest connected lesion region.
  config.inference.fill_holes = False  # Fill holes (the challenge asks for one region without).

  # 'auto' = bfloat16 compute on GPU/TPU, float32 on CPU. Parameters, optimizer state,
  # BatchNorm statistics and the loss always stay float32.
  config.precision = 'auto'  # 'auto' | 'float32' | 'bfloat16'
  config.parallelism = 'shard_map'  # 'shard_map' (jit over a device mesh) | 'pmap'
  # Deterministic XLA:GPU kernels (--xla_gpu_deterministic_ops), for runs that must repeat to the
  # last bit on a GPU, at 0.60x the speed on an H200; CPU runs repeat without it
  # (unet_jax/determinism.py).
  config.deterministic = False
  return config
