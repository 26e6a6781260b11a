r"""The README's picture of what the quickstart learns: held-out synthetic images with the true
lesion outlined in green and the model's prediction tinted orange.

  python -m experiments.quickstart_figure --workdir workdirs/quickstart \
      --output experiments/results/quickstart_predictions.png

The images are the quickstart's own validation images (its held-out fold of the synthetic data),
predicted at native size through `unet_jax.inference`, the path `unet_jax.predict` uses.
"""

import argparse
import io

import numpy as np


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True, help='A trained quickstart run.')
  parser.add_argument('--output', required=True, help='PNG to write.')
  parser.add_argument('--count', type=int, default=6, help='Images in the row.')
  parser.add_argument('--size', type=int, default=160, help='Size the images are drawn at.')
  args = parser.parse_args()
  from unet_jax import cli

  cli.check_can_be_file(args.output, '--output')  # Before the model loads, not after.
  # Imported after the arguments are read: `--help` and a wrong call answer without TensorFlow.
  from PIL import Image

  from unet_jax import figures, inference, input_pipeline, results, synthetic

  predictor = inference.load_predictor(args.workdir, checkpoint='final')
  data = predictor.config.data
  tiles = []
  for index in input_pipeline.synthetic_indices(data, 'val')[:args.count]:
    image, truth = synthetic.make_example(data.synthetic_seed, index, args.size, args.size)
    prediction = predictor.predict(image) >= 0.5
    tile = image.astype(np.float32)
    tile[prediction] = 0.55 * tile[prediction] + 0.45 * np.array([255, 110, 0])
    tile = np.round(tile).astype(np.uint8)
    tile[figures.outline(truth.astype(bool))] = (0, 255, 0)
    tiles.append(tile)
  grid = np.concatenate(tiles, axis=1)
  png = io.BytesIO()
  Image.fromarray(grid).save(png, format='PNG')
  results.write_atomic(args.output, png.getvalue())  # An interrupted call leaves no PNG.
  print(f'Wrote {args.output} ({grid.shape[1]}x{grid.shape[0]}).')


if __name__ == '__main__':
  main()
