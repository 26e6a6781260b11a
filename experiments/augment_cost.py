"""What augmenting on the accelerator costs, against the train step it runs in.

    python -m experiments.augment_cost                       # 224x224, batch 32, this machine
    python -m experiments.augment_cost --image-size 224 --batch-size 128

Times `augment.make_preprocess` (the default config.augment, uint8 in, normalized float32 out)
alone, jitted, on the first device: XLA's FLOP count per image, the median time per batch, and
both as fractions of the classic U-Net's training FLOPs per image (`unet_jax.flops`). Imports no
TensorFlow, so it runs on the GPU machine too.
"""

import argparse
import os
import sys
import types

if __package__ in (None, ''):  # Run as a file (`python experiments/X.py`): find `experiments`.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp

from experiments import benchmark
from unet_jax import augment, flops


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--image-size', type=int, default=224)
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--steps', type=int, default=20, help='Timed calls (median reported).')
  args = parser.parse_args(argv)

  preprocess = jax.jit(augment.make_preprocess(types.SimpleNamespace(**benchmark.AUGMENT),
                                               'unit', seed=0))
  batch = jax.device_put(benchmark.synthetic_batch(args.batch_size, args.image_size))
  step = jnp.int32(0)
  compiled = preprocess.lower(batch, step, jnp.int32(0)).compile()
  gflop = benchmark.cost_flops(compiled) / args.batch_size / 1e9
  jax.block_until_ready(compiled(batch, step, jnp.int32(0)))
  seconds = benchmark.median_step_s(
      lambda: jax.block_until_ready(compiled(batch, step, jnp.int32(0))), args.steps, 2)
  train_gflop = flops.unet_flops(args.image_size, upsample='transpose').train / 1e9
  env = benchmark.environment()
  print(f"device={env['device']} backend={env['backend']} cpu={env['cpu']} "
        f"jax={env['jax']} date={env['date']}")
  print('image size | batch | XLA GFLOP/img | ms/batch | img/s | classic U-Net train GFLOP/img '
        '| augmentation FLOPs / train FLOPs')
  print(f'{args.image_size} | {args.batch_size} | {gflop:.3f} | {1e3 * seconds:.2f} | '
        f'{args.batch_size / seconds:.0f} | {train_gflop:.1f} | {gflop / train_gflop:.3%}')
  return dict(gflop_per_image=gflop, seconds_per_batch=seconds,
              train_gflop_per_image=train_gflop, images_per_s=args.batch_size / seconds)


if __name__ == '__main__':
  main()
