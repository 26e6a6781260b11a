"""Synthetic dermoscopy-like images with binary lesion masks: the built-in default dataset.

Why this exists: a new user's `make demo` must train end to end with no download and no account on
the ISIC archive. Random noise would train nothing useful and a plain disc on a flat background is
solved by a threshold, so each image imitates the things that make real dermoscopy segmentation
non-trivial: a textured skin background with a random tone, the dark corners of the dermoscope's
circular field of view, an irregular brown lesion with a soft edge and inner colour variation, thin
dark hairs crossing everything, and distractors that are dark or colourful but are *not* lesion
(freckles, ruler ticks, coloured stickers). A model has to use shape, size and colour together.

Design constraints that shape the code:
  * Only numpy at import time: the package must stay importable on machines with just JAX, and PIL
    is not a dependency. TensorFlow is imported lazily inside `write_folder` for JPEG/PNG encoding.
  * Every example depends only on (seed, index) through its own `SeedSequence`, so any process can
    generate any slice of a dataset on its own and the result is bit-identical across calls.
  * Random parameters are drawn in size-independent units (fractions of the image) and before any
    per-pixel noise, so one (seed, index) renders the same scene at every resolution of a given
    aspect ratio; only the fine texture differs.
  * Everything is vectorised numpy (no per-pixel Python loops) and channels-first inside: about
    2.5 ms for a 96x96 example and 15 ms for 256x256 on one CPU core.
"""

import functools
import math
import os
from collections.abc import Sequence

import numpy as np

# Skin tones (linear-ish RGB in [0, 1]) from very light to tan; each image mixes two neighbours.
_SKIN_TONES = np.array(
  [
    [0.95, 0.80, 0.74],
    [0.92, 0.72, 0.66],
    [0.88, 0.66, 0.58],
    [0.83, 0.60, 0.50],
    [0.74, 0.53, 0.41],
    [0.64, 0.45, 0.34],
  ],
  np.float32,
)
# Dark lesion core colours: dark brown, near-black brown, reddish brown.
_CORE_COLOURS = np.array(
  [[0.30, 0.17, 0.11], [0.18, 0.11, 0.08], [0.40, 0.20, 0.14], [0.26, 0.17, 0.15]], np.float32
)
# Sticker / marker colours: strongly saturated, unlike anything on skin.
_STICKER_COLOURS = np.array(
  [[0.10, 0.35, 0.90], [0.15, 0.70, 0.30], [0.95, 0.85, 0.10], [0.95, 0.45, 0.10]], np.float32
)
_NUM_HARMONICS = 6  # Fourier harmonics 2..7 of the lesion boundary radius.
_HAIR_STEP = 0.5  # Pixels between stamped points along a stroke; < 1 keeps strokes gap-free.


@functools.lru_cache(maxsize=64)
def _interp_weights(n: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
  """Left node index [n] and smoothstep weight [n] that resample `grid` noise nodes onto n pixels.

  Smoothstep weights instead of linear ones avoid the visible creases of bilinear upsampling.
  """
  t = (np.arange(n, dtype=np.float64) + 0.5) * (grid - 1) / n
  i0 = np.minimum(t.astype(np.int64), grid - 2)
  f = t - i0
  f = (f * f * (3.0 - 2.0 * f)).astype(np.float32)
  i0.setflags(write=False)
  f.setflags(write=False)
  return i0, f


def _smooth_noise(nodes: np.ndarray, height: int, width: int) -> np.ndarray:
  """Upsamples noise nodes [c, g, g] to a smooth field [c, height, width] (roughly unit scale).

  Separable two-tap gathers (`np.take`, much faster than fancy indexing) rather than a matmul with
  interpolation matrices: no BLAS call, whose worker threads spin and double the CPU cost when many
  processes generate data at once.
  """
  grid = nodes.shape[-1]
  iy, fy = _interp_weights(height, grid)
  ix, fx = _interp_weights(width, grid)
  steps = np.diff(nodes, axis=1)
  rows = np.take(nodes, iy, axis=1) + np.take(steps, iy, axis=1) * fy[:, None]
  steps = np.diff(rows, axis=2)
  return np.take(rows, ix, axis=2) + np.take(steps, ix, axis=2) * fx


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
  t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def _ellipse_box(
  cy: float, cx: float, ry: float, rx: float, soft: float, height: int, width: int
) -> tuple[slice, slice, np.ndarray] | None:
  """Antialiased alpha of an axis-aligned ellipse, computed only inside its bounding box.

  Small objects (freckles, stickers) then cost O(their area) rather than O(image). Returns None
  when the ellipse lies entirely outside the image.
  """
  cy, cx, ry, rx, soft = float(cy), float(cx), float(ry), float(rx), float(soft)
  pad = soft + 1.0
  y0, y1 = max(int(cy - ry - pad), 0), min(int(cy + ry + pad) + 1, height)
  x0, x1 = max(int(cx - rx - pad), 0), min(int(cx + rx + pad) + 1, width)
  if y0 >= y1 or x0 >= x1:
    return None
  ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None] / ry
  xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :] / rx
  dist = (np.sqrt(ys * ys + xs * xs) - 1.0) * min(ry, rx)  # ~signed distance in pixels.
  alpha = np.clip(0.5 - dist / soft, 0.0, 1.0)
  return slice(y0, y1), slice(x0, x1), alpha


def _stroke_field(
  strokes: Sequence[tuple[np.ndarray, float]], height: int, width: int
) -> np.ndarray | None:
  """Coverage in [0, 1] of thick polylines (hairs, ruler ticks), by stamping small discs.

  Each stroke is densely sampled (every `_HAIR_STEP` px); around every sample a small window of
  pixels gets `distance - half_width`, and `np.minimum.at` keeps the nearest stroke per pixel.
  This is O(stroke length) instead of O(image x points) for an exact distance field, and the
  result is antialiased (fractional coverage for sub-pixel hairs at low resolution).
  """
  pts, hws = [], []
  max_hw = max((hw for _, hw in strokes), default=0.0)
  margin = max_hw + 2.0
  for p, hw in strokes:
    keep = (p[:, 0] > -margin) & (p[:, 0] < height + margin)
    keep &= (p[:, 1] > -margin) & (p[:, 1] < width + margin)
    if keep.any():
      pts.append(p[keep])
      hws.append(np.full(int(keep.sum()), hw, np.float32))
  if not pts:
    return None
  p = np.concatenate(pts).astype(np.float32)
  hw = np.concatenate(hws)
  kr = int(np.ceil(max_hw + 1.0))
  off = np.arange(-kr, kr + 1)
  oy, ox = np.meshgrid(off, off, indexing='ij')
  oy, ox = oy.ravel(), ox.ravel()
  base = np.floor(p).astype(np.int64)
  py = base[:, :1] + oy[None, :]  # [n, k] pixel rows.
  px = base[:, 1:] + ox[None, :]
  dy = py + 0.5 - p[:, :1]
  dx = px + 0.5 - p[:, 1:]
  d = np.sqrt(dy * dy + dx * dx) - hw[:, None]
  valid = (py >= 0) & (py < height) & (px >= 0) & (px < width) & (d < 0.5)
  field = np.full(height * width, 0.5, np.float32)
  np.minimum.at(field, (py * width + px)[valid], d[valid])
  return np.clip(0.5 - field, 0.0, 1.0).reshape(height, width)


def _col(rgb: Sequence[float] | np.ndarray) -> np.ndarray:
  """An RGB triple as a float32 [3, 1, 1] array, to broadcast over channels-first images."""
  return np.asarray(rgb, np.float32).reshape(3, 1, 1)


def _uniform(rng: np.random.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
  """One uniform draw as a Python float.

  Not a numpy float64 scalar: under NEP 50 those silently promote the float32 image arrays they
  touch to float64, which doubles the cost of all the per-pixel work.
  """
  return float(rng.uniform(lo, hi))


def _curve(rng: np.random.Generator, height: int, width: int, scale: float) -> np.ndarray:
  """Draws size-independent parameters of one hair and returns its dense centreline [n, 2] (px).

  The hair is a curve of slowly turning heading (quadratic in arc length) through a random point,
  long enough to cross a good part of the image, like real hairs squashed under the dermoscope.
  """
  mid = rng.uniform(0.0, 1.0, 2) * np.array([height, width])
  heading = _uniform(rng, 0.0, 2.0 * np.pi)
  length = _uniform(rng, 0.4, 1.4) * scale
  bend1, bend2 = float(rng.normal(0.0, 1.2)), float(rng.normal(0.0, 1.5))
  n = max(int(length / _HAIR_STEP), 2)
  t = (np.arange(n) - n / 2) * (_HAIR_STEP / scale)  # Arc length in units of the short side.
  ang = heading + bend1 * t + bend2 * t * t
  path = np.cumsum(np.stack([np.sin(ang), np.cos(ang)], axis=1) * _HAIR_STEP, axis=0)
  return path + (mid - path[n // 2])


def make_example(seed: int, index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns (image uint8 [height, width, 3], mask uint8 [height, width] with values in {0, 1}).

  Depends only on (seed, index): the generator is seeded with `SeedSequence([seed, index])`, so
  examples are independent of each other and of the order or process that makes them. The mask is
  the hard lesion region; hairs, freckles, ruler marks and stickers are never part of it.
  """
  rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
  h, w = int(height), int(width)
  s = float(min(h, w))  # Sizes scale with the shorter side; positions with each side.
  ys = np.arange(h, dtype=np.float32)[:, None] + np.float32(0.5)
  xs = np.arange(w, dtype=np.float32)[None, :] + np.float32(0.5)

  def uni(lo: float = 0.0, hi: float = 1.0) -> float:
    return _uniform(rng, lo, hi)

  # ---- Scalar parameters: size-independent draws, always in the same order. ----
  tone_i = int(rng.integers(0, len(_SKIN_TONES) - 1))
  tone = _SKIN_TONES[tone_i] + (_SKIN_TONES[tone_i + 1] - _SKIN_TONES[tone_i]) * uni()
  tone = (tone * rng.uniform(0.95, 1.05, 3).astype(np.float32))[:, None, None]
  redness = uni(0.0, 0.08)
  # Lesion geometry: equivalent radius 10%-35% of the short side (so it spans about 20%-70% of
  # it), elongated up to 1.7:1, boundary radius modulated by Fourier harmonics 2..7 plus a little
  # small-scale raggedness from a noise field.
  cy, cx = uni(0.3, 0.7) * h, uni(0.3, 0.7) * w
  r0 = math.sqrt(uni(0.10**2, 0.35**2)) * s
  aspect = math.sqrt(uni(1.0, 1.7))
  rot = uni(0.0, np.pi)
  wobble = uni(0.05, 0.25)
  ks = np.arange(2, 2 + _NUM_HARMONICS)
  amps = wobble * rng.uniform(0.2, 1.0, _NUM_HARMONICS) / (ks - 1.0) ** 0.8
  phases = rng.uniform(0.0, 2.0 * np.pi, _NUM_HARMONICS)
  ragged = uni(0.01, 0.06)
  soft = uni(0.005, 0.025) * s + 0.6  # Edge blur in px (image only; the mask stays hard).
  # Lesion colours: a rim a bit darker/browner than skin, a dark core, optional blue-grey veil.
  rim = tone * np.float32(uni(0.55, 0.8)) * _col([1.0, 0.9, 0.85])
  core = _col(_CORE_COLOURS[int(rng.integers(len(_CORE_COLOURS)))] * uni(0.7, 1.3))
  core_gamma = uni(0.4, 1.5)
  core_strength = uni(0.4, 1.0)
  veil = uni() < 0.25
  # Vignette (circular field of view of a contact dermoscope); absent on some images.
  fov_radius = uni(1.0, 1.5)
  fov_width = uni(0.03, 0.2)
  fov_strength = uni(0.7, 1.0) if uni() < 0.8 else 0.0
  # Hairs: none on ~30% of images, up to a dozen on some.
  num_hairs = int(rng.choice([0, 0, 0, 1, 2, 3, 4, 6, 8, 12]))
  hair_hw = uni(0.002, 0.005) * s + 0.2
  hair_colour = _col([0.10, 0.07, 0.05]) * np.float32(uni(0.5, 2.0))
  hair_opacity = uni(0.7, 0.95)
  hairs = [_curve(rng, h, w, s) for _ in range(num_hairs)]
  # Distractors are placed by rejection against a bound on the lesion's extent, so they never
  # touch it (a freckle half inside the mask would make the label ambiguous).
  extent = r0 * (1.0 + float(amps.sum()) + 3.0 * ragged) * aspect + soft
  num_freckles = int(rng.integers(0, 5))
  freckles = rng.uniform(0.06, 0.94, (4 * max(num_freckles, 1), 2)) * [h, w]
  freckle_r = rng.uniform(0.012, 0.035, len(freckles)) * s
  freckle_ecc = rng.uniform(0.75, 1.3, len(freckles))
  freckle_dark = rng.uniform(0.3, 0.9, len(freckles))
  num_stickers = int(rng.choice([0, 0, 1, 1, 1, 2]))
  stickers = rng.uniform(0.08, 0.92, (6 * max(num_stickers, 1), 2)) * [h, w]
  sticker_r = rng.uniform(0.05, 0.09, len(stickers)) * s
  sticker_col = _STICKER_COLOURS[rng.integers(0, len(_STICKER_COLOURS), len(stickers))]
  has_ruler = uni() < 0.3
  ruler_pos, ruler_span = uni(0.3, 0.7), uni(0.4, 0.8)
  # Smooth-noise nodes on fixed grids, so the scene does not depend on the resolution.
  low = rng.standard_normal((3, 5, 5)).astype(np.float32)  # Tone drift, redness, blotch bias.
  mid = rng.standard_normal((3, 14, 14)).astype(np.float32)  # Blotches, veil, mottling.
  edge = rng.standard_normal((1, 28, 28)).astype(np.float32)  # Boundary raggedness.
  noise_sigma = uni(0.006, 0.02)

  # ---- Skin background. Channels-first [3, h, w] until the end: broadcasting against an inner
  # axis of length 3 (channels-last) makes every numpy op several times slower. ----
  lowf = _smooth_noise(low, h, w)
  midf = _smooth_noise(mid, h, w)
  img = tone * (1.0 + 0.05 * lowf[0])
  img += np.maximum(lowf[1], 0.0) * (_col([1.0, -0.45, -0.4]) * np.float32(redness))

  # ---- Lesion: wobbly polar boundary around (cy, cx). ----
  dy, dx = ys - np.float32(cy), xs - np.float32(cx)
  cr, sr = np.float32(math.cos(rot)), np.float32(math.sin(rot))
  u = (dx * cr + dy * sr) * np.float32(1.0 / aspect)
  v = (dy * cr - dx * sr) * np.float32(aspect)
  r = np.sqrt(u * u + v * v) + np.float32(1e-6)
  c1, s1 = u / r, v / r  # cos/sin(theta); cos/sin(k theta) by recurrence, cheaper than trig.
  ck, sk = c1 * c1 - s1 * s1, 2.0 * c1 * s1
  mod = _smooth_noise(edge, h, w)[0] * np.float32(ragged)
  for amp, ph in zip(amps, phases, strict=True):
    mod += np.float32(amp * math.cos(ph)) * ck - np.float32(amp * math.sin(ph)) * sk
    ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
  radius = np.float32(r0) * np.maximum(1.0 + mod, 0.3)
  mask = r < radius
  alpha = np.clip(0.5 - (r - radius) / np.float32(soft), 0.0, 1.0)
  depth = np.clip(1.0 - r / radius, 0.0, 1.0)
  # Darker core, lighter rim, plus blotches that move the darkness around inside the lesion.
  blot = _smoothstep(-0.2, 1.0, midf[0] + 0.6 * lowf[2])
  dark = np.clip(core_strength * depth**core_gamma + 0.5 * blot * np.sqrt(depth), 0.0, 1.0)
  lesion = rim + (core - rim) * dark
  lesion *= 1.0 + 0.12 * midf[2]  # Mottled pigment.
  if veil:
    veil_a = 0.6 * _smoothstep(0.3, 1.2, midf[1]) * _smoothstep(0.0, 0.4, depth)
    lesion += (_col([0.38, 0.42, 0.52]) - lesion) * veil_a
  img += (lesion - img) * alpha

  # ---- Freckles: small dark spots clear of the lesion (not in the mask). ----
  placed = 0
  for (fy, fx), fr, fe, fd in zip(freckles, freckle_r, freckle_ecc, freckle_dark, strict=True):
    if placed >= num_freckles:
      break
    if math.hypot(fy - cy, fx - cx) < extent + 1.5 * fr + 0.03 * s:
      continue
    box = _ellipse_box(fy, fx, fr * fe, fr / fe, 0.4 * fr + 0.5, h, w)
    if box is not None:
      sy, sx, a = box
      img[:, sy, sx] += (rim + (core - rim) * np.float32(fd) - img[:, sy, sx]) * a
    placed += 1

  # ---- Hairs over everything on the skin (they do not change the mask). ----
  if hairs:
    cover = _stroke_field([(p, hair_hw) for p in hairs], h, w)
    if cover is not None:
      img += (hair_colour - img) * (np.float32(hair_opacity) * cover)

  # ---- Ruler ticks along the side with the most room next to the lesion. ----
  gaps = [cy - extent, h - cy - extent, cx - extent, w - cx - extent]
  side = int(np.argmax(gaps))
  if has_ruler and gaps[side] > 0.12 * s:
    along = w if side < 2 else h
    base = gaps[side] * ruler_pos * 0.5  # Distance of the ticks' base from the image edge.
    spacing = 0.03 * s
    strokes = []
    for i in range(int(ruler_span * along / spacing)):
      tick = np.arange(0.0, (0.05 if i % 5 == 0 else 0.025) * s, _HAIR_STEP) + base
      pos = along * (0.5 - ruler_span / 2) + i * spacing
      strokes.append((_orient(tick, pos, side, h, w), 0.003 * s + 0.25))
    cover = _stroke_field(strokes, h, w)
    if cover is not None:
      img += (np.float32(0.08) - img) * (0.85 * cover)

  # ---- Coloured stickers, also clear of the lesion. ----
  placed = 0
  for (qy, qx), qr, qc in zip(stickers, sticker_r, sticker_col, strict=True):
    if placed >= num_stickers:
      break
    if math.hypot(qy - cy, qx - cx) < extent + qr + 0.03 * s:
      continue
    box = _ellipse_box(qy, qx, qr, qr, 0.6, h, w)
    if box is not None:
      sy, sx, a = box
      # Slight shading (lit from the top left) so it reads as a physical disc, not a flat patch.
      gy = (np.arange(sy.start, sy.stop, dtype=np.float32)[:, None] + 0.5 - float(qy)) / float(qr)
      gx = (np.arange(sx.start, sx.stop, dtype=np.float32)[None, :] + 0.5 - float(qx)) / float(qr)
      shade = 1.0 - 0.08 * (gy + gx)
      img[:, sy, sx] += (_col(qc) * shade - img[:, sy, sx]) * a
    placed += 1

  # ---- Dermoscope vignette, then fine skin texture and sensor noise (size-dependent draws). ----
  rn2 = ((ys - np.float32(h / 2)) ** 2 + (xs - np.float32(w / 2)) ** 2) * np.float32(4.0 / s**2)
  rn = np.sqrt(rn2)
  fov = 1.0 - fov_strength * _smoothstep(fov_radius - fov_width, fov_radius + fov_width, rn)
  fine = rng.standard_normal((h + 2, w + 2), dtype=np.float32)
  fine = fine[:-2, 1:-1] + fine[2:, 1:-1] + fine[1:-1, :-2] + fine[1:-1, 2:] + fine[1:-1, 1:-1]
  img *= fov * (1.0 - 0.12 * rn2) * (1.0 + 0.01 * fine)
  img += rng.standard_normal((3, h, w), dtype=np.float32) * np.float32(noise_sigma)
  image = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)
  image = np.ascontiguousarray(image)
  return image, mask.astype(np.uint8)


def _orient(dist: np.ndarray, pos: float, side: int, height: int, width: int) -> np.ndarray:
  """(y, x) points of a ruler tick given its distances from an image edge and position along it."""
  along = np.full_like(dist, pos)
  if side == 0:  # Top edge.
    return np.stack([dist, along], axis=1)
  if side == 1:  # Bottom edge.
    return np.stack([height - dist, along], axis=1)
  if side == 2:  # Left edge.
    return np.stack([along, dist], axis=1)
  return np.stack([along, width - dist], axis=1)  # Right edge.


def make_dataset(
  num: int, height: int, width: int, seed: int, start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
  """Examples start..start+num-1: (images uint8 [num, h, w, 3], masks uint8 [num, h, w] in {0,1}).

  make_dataset(n, h, w, s)[k] == make_example(s, k, h, w) for every k, so a dataset can be built in
  shards (by `start`) by different processes and still be identical to a single-process build.
  """
  images = np.empty((num, height, width, 3), np.uint8)
  masks = np.empty((num, height, width), np.uint8)
  for k in range(num):
    images[k], masks[k] = make_example(seed, start + k, height, width)
  return images, masks


def write_folder(
  root: str,
  num: int,
  seed: int,
  sizes: Sequence[tuple[int, int]] = ((96, 128),),
  image_dir: str = 'ISIC2018_Task1-2_Training_Input',
  mask_dir: str = 'ISIC2018_Task1_Training_GroundTruth',
) -> list[str]:
  """Writes examples as an ISIC-layout folder; returns the ids (7-digit strings, '0000000', ...).

  Layout: <root>/<image_dir>/ISIC_<id>.jpg (JPEG, quality 95) and
  <root>/<mask_dir>/ISIC_<id>_segmentation.png (single-channel, values 0/255), as in the ISIC 2018
  Task 1 download, so the real-data input pipeline can be tested on small files. Example k is
  `make_example(seed, k, *sizes[k % len(sizes)])`; mixed sizes exercise resizing like real data.
  TensorFlow (for the encoders) is imported here only, keeping this module numpy-only to import.
  """
  import tensorflow as tf  # Lazy on purpose: only this function needs an encoder.

  from unet_jax import results  # Atomic writes: an interrupted run leaves no half-written image.

  image_root = os.path.join(root, image_dir)
  mask_root = os.path.join(root, mask_dir)
  os.makedirs(image_root, exist_ok=True)
  os.makedirs(mask_root, exist_ok=True)
  ids = []
  for k in range(num):
    height, width = sizes[k % len(sizes)]
    image, mask = make_example(seed, k, height, width)
    ident = f'{k:07d}'
    jpeg = tf.io.encode_jpeg(image, quality=95).numpy()
    png = tf.io.encode_png(mask[..., None] * np.uint8(255)).numpy()
    results.write_atomic(os.path.join(image_root, f'ISIC_{ident}.jpg'), jpeg)
    results.write_atomic(os.path.join(mask_root, f'ISIC_{ident}_segmentation.png'), png)
    ids.append(ident)
  return ids
