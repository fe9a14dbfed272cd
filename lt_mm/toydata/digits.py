"""Real handwritten digits as raw material for the tiny long-tailed datasets.

The images are the 1797 8x8 handwritten digits bundled with scikit-learn
(``sklearn.datasets.load_digits``, grey levels 0..16, classes 0..9, about
180 images per class). They are upscaled with bilinear interpolation and
rescaled to 0..255 so that they can be written as ordinary JPEG/PNG files.

Everything here is framework-free (numpy, Pillow, scikit-learn) and
deterministic: randomness always comes from a ``numpy.random.Generator``
passed by the caller.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

#: Number of digit classes available (0..9).
NUM_DIGIT_CLASSES = 10
#: Grey level (0..255) from which an upscaled digit pixel counts as stroke.
STROKE_THRESHOLD = 128

ColourLike = Union[Sequence[int], np.ndarray]


def check_int(name: str,
              value: int,
              low: int,
              high: Optional[int] = None,
              hint: str = '') -> int:
    """Return ``value`` as ``int`` or raise a ``ValueError`` naming it.

    A light, torch-free counterpart of :func:`lt_mm.core.checks.check_range`
    for integer sizes, so that :mod:`lt_mm.toydata` needs only numpy,
    Pillow and scikit-learn.

    Args:
        name: how the value is called in the error message.
        value: the value to check; bools and non-integral numbers fail.
        low: smallest accepted value (inclusive).
        high: largest accepted value (inclusive), ``None`` for no bound.
        hint: extra advice appended to the message.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f'{name}={value!r} must be an integer. {hint}'.strip())
    v = int(value)
    if v < low or (high is not None and v > high):
        bound = f'[{low}, {high}]' if high is not None else f'>= {low}'
        raise ValueError(
            f'{name}={value!r} is out of range: expected {bound}. '
            f'{hint}'.strip())
    return v


def check_positive(name: str, value: float, hint: str = '') -> float:
    """Return ``value`` as ``float`` or raise unless it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f'{name}={value!r} is not a number.') from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(
            f'{name}={value!r} must be a finite number > 0. {hint}'.strip())
    return v


@functools.lru_cache(maxsize=1)
def _raw_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The scikit-learn digits, loaded once per process.

    Returns:
        tuple: images float64 (1797, 8, 8) in 0..16 and labels int64 (1797,).
    """
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def raw_digits() -> Tuple[np.ndarray, np.ndarray]:
    """Copies of the raw 8x8 scikit-learn digits.

    Returns:
        tuple: ``(images, labels)``; images float64 (1797, 8, 8) with grey
        levels 0..16 (16 = ink), labels int64 (1797,) in 0..9.
    """
    images, labels = _raw_digits()
    return images.copy(), labels.copy()


def resize_digit(digit: np.ndarray, size: int) -> np.ndarray:
    """Upscale one raw digit to ``size x size`` grey levels 0..255.

    The 0..16 grey levels are mapped linearly to 0..255 (``v * 255 / 16``)
    and resized with Pillow's bilinear filter on float data, then rounded
    and clipped.

    Args:
        digit: float array (8, 8) in 0..16 (a row of :func:`raw_digits`).
        size: output side length in pixels, >= 1.

    Returns:
        np.ndarray: uint8 (size, size), 0 = paper, 255 = ink.
    """
    size = check_int('size', size, 1)
    digit = np.asarray(digit, dtype=np.float32)
    if digit.ndim != 2:
        raise ValueError(
            f'digit has shape {digit.shape}; expected one 2-D image.')
    scaled = digit * np.float32(255.0 / 16.0)
    img = Image.fromarray(scaled).resize((size, size), Image.BILINEAR)
    out = np.rint(np.asarray(img, dtype=np.float32))
    return np.clip(out, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _digit_images(size: int) -> np.ndarray:
    raw, _ = _raw_digits()
    out = np.stack([resize_digit(d, size) for d in raw])
    out.setflags(write=False)
    return out


def load_digit_images(size: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """All 1797 real handwritten digits, upscaled to ``size x size``.

    Args:
        size: side length in pixels (>= 1). 32 gives CIFAR-sized images.

    Returns:
        tuple: ``(images, labels)``; images uint8 (1797, size, size) with
        0 = paper and 255 = ink (see :func:`resize_digit`), labels int64
        (1797,) in 0..9. Fresh copies, safe to modify.
    """
    size = check_int('size', size, 1)
    _, labels = _raw_digits()
    return _digit_images(size).copy(), labels.copy()


def indices_by_class(labels: np.ndarray) -> list:
    """Indices of each digit class, in the fixed scikit-learn order.

    Args:
        labels: int array (N,) with values in 0..9.

    Returns:
        list: ``NUM_DIGIT_CLASSES`` int64 arrays of indices into ``labels``.
    """
    labels = np.asarray(labels)
    return [np.flatnonzero(labels == c) for c in range(NUM_DIGIT_CLASSES)]


def colourise(grey: np.ndarray, colour: ColourLike,
              background: Union[np.ndarray, ColourLike]) -> np.ndarray:
    """Paint a grey digit in ``colour`` over ``background``.

    The grey level acts as ink opacity ``a = grey / 255``:
    ``rgb = (1 - a) * background + a * colour`` (rounded to uint8).

    Args:
        grey: uint8 (H, W), 0 = paper, 255 = ink.
        colour: RGB ink colour, 3 values in 0..255.
        background: uint8 (H, W, 3) image or one RGB colour (3 values).

    Returns:
        np.ndarray: uint8 (H, W, 3).
    """
    grey = np.asarray(grey)
    if grey.ndim != 2:
        raise ValueError(f'grey has shape {grey.shape}; expected (H, W).')
    alpha = grey.astype(np.float64)[..., None] / 255.0
    fg = np.asarray(colour, dtype=np.float64).reshape(1, 1, 3)
    bg = np.asarray(background, dtype=np.float64)
    if bg.ndim == 1:
        bg = np.broadcast_to(bg.reshape(1, 1, 3), grey.shape + (3, ))
    if bg.shape != grey.shape + (3, ):
        raise ValueError(
            f'background has shape {bg.shape}; expected {grey.shape + (3, )}'
            ' or a single RGB colour.')
    out = (1.0 - alpha) * bg + alpha * fg
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """Replicate a grey image (H, W) into an RGB uint8 image (H, W, 3)."""
    grey = np.asarray(grey, dtype=np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def random_ink_colour(rng: np.random.Generator) -> np.ndarray:
    """A bright RGB colour (each channel 140..255) that contrasts with
    :func:`textured_background`.

    Returns:
        np.ndarray: uint8 (3,).
    """
    return rng.integers(140, 256, size=3).astype(np.uint8)


def textured_background(height: int,
                        width: int,
                        rng: np.random.Generator,
                        low: int = 0,
                        high: int = 100,
                        cells: int = 4,
                        noise: float = 6.0) -> np.ndarray:
    """A dark, smoothly varying RGB texture with a little pixel noise.

    A ``cells x cells`` grid of random colours in ``[low, high)`` is
    upscaled bilinearly to ``height x width`` and Gaussian noise of standard
    deviation ``noise`` is added.

    Returns:
        np.ndarray: uint8 (height, width, 3).
    """
    height = check_int('height', height, 1)
    width = check_int('width', width, 1)
    grid = rng.uniform(low, high, size=(cells, cells, 3)).astype(np.float32)
    chans = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(grid[..., k])).resize(
                (width, height), Image.BILINEAR)) for k in range(3)
    ]
    tex = np.stack(chans, axis=-1).astype(np.float64)
    tex += rng.normal(0.0, noise, size=tex.shape)
    return np.clip(np.rint(tex), 0, 255).astype(np.uint8)


def jitter_digit(grey: np.ndarray,
                 rng: np.random.Generator,
                 max_shift: int = 2,
                 noise: float = 8.0) -> np.ndarray:
    """A new variant of a digit: random shift plus Gaussian grey noise.

    Used only when a class has fewer distinct real digits than requested.
    The image is translated by ``dx, dy`` in ``[-max_shift, max_shift]``
    (vacated pixels become paper, 0) and noise with standard deviation
    ``noise`` is added.

    Args:
        grey: uint8 (H, W).
        rng: random generator.

    Returns:
        np.ndarray: uint8 (H, W).
    """
    grey = np.asarray(grey, dtype=np.float64)
    h, w = grey.shape
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
    out = np.zeros_like(grey)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else \
        (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else \
        (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = grey[ys, xs]
    out += rng.normal(0.0, noise, size=out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def first_free_box(boxes: Sequence[Tuple[int, int, int]], xy: np.ndarray,
                   side: int) -> int:
    """First candidate position whose square box touches no placed box.

    Args:
        boxes: already placed squares ``(x0, y0, side)``.
        xy: int array (T, 2) of candidate top-left corners ``(x0, y0)``.
        side: side of the square to place.

    Returns:
        int: index into ``xy`` of the first candidate that keeps a gap of
        at least 1 px to every box in ``boxes`` (0 when ``boxes`` is
        empty), or -1 if none does.
    """
    if not boxes:
        return 0
    b = np.asarray(boxes)[None]  # (1, B, 3)
    x, y = xy[:, None, 0], xy[:, None, 1]  # (T, 1)
    hit = ((x < b[..., 0] + b[..., 2] + 1) & (b[..., 0] < x + side + 1)
           & (y < b[..., 1] + b[..., 2] + 1) & (b[..., 1] < y + side + 1))
    free = np.flatnonzero(~hit.any(axis=1))
    return int(free[0]) if free.size else -1


def save_jpeg(rgb: np.ndarray, path: str, quality: int = 95) -> None:
    """Write an RGB uint8 (H, W, 3) array as a baseline JPEG file."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'rgb has shape {rgb.shape}; expected (H, W, 3).')
    Image.fromarray(rgb).save(path, format='JPEG', quality=quality)


def save_label_png(label: np.ndarray, path: str) -> None:
    """Write a uint8 (H, W) label map as a palette-less greyscale PNG."""
    label = np.ascontiguousarray(label, dtype=np.uint8)
    if label.ndim != 2:
        raise ValueError(f'label has shape {label.shape}; expected (H, W).')
    Image.fromarray(label).save(path, format='PNG')


def exponential_profile(num_classes: int, head: float,
                        imbalance_ratio: float) -> np.ndarray:
    """Exponentially decaying per-class values, head first.

    ``v_c = head * imbalance_ratio ** (-c / (C - 1))`` for ``c = 0..C-1``
    (the "exponential" long-tail profile of Cui et al., CVPR 2019,
    class-balanced loss, Sec. 5 / CIFAR-LT, as also used to subsample
    ImageNet-LT-style splits): ``v_0 = head`` and
    ``v_{C-1} = head / imbalance_ratio``.

    Returns:
        np.ndarray: float64 (C,).
    """
    num_classes = check_int('num_classes', num_classes, 1)
    if num_classes == 1:
        return np.array([float(head)])
    c = np.arange(num_classes, dtype=np.float64)
    return float(head) * float(imbalance_ratio)**(-c / (num_classes - 1))
