"""Training-time augmentation suited to radiographs (pure numpy/OpenCV).

It acts on the *model input* (``preprocess`` output: ``(S, S, 3)`` float32 in [0, 1]),
so the images are decoded and preprocessed by exactly the code that scanning uses and
augmentation is the only training-only step.

What is varied, and why it is safe for upper-extremity radiographs:

- small rotations and a slight zoom: positioning varies between technologists;
- horizontal flips: a left limb is the mirror image of a right one, so a flipped study is
  a plausible study of the other side. No vertical flips: radiographs are hung with a
  consistent proximal/distal orientation, an upside-down hand is not a real input;
- brightness, contrast and gamma: exposure and detector response vary between sites.

No colour jitter: radiographs are grey, and every intensity change is applied identically
to the three channels (a grey image stays grey). Geometric changes fill with 0 (black),
the background of a radiograph in display orientation (MONOCHROME2).

MONAI style: parameters in :class:`AugmentParams`, data through
:meth:`RadiographAugment.__call__`, randomness from an explicit ``numpy`` generator.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class AugmentParams:
    """Ranges of the random changes; ``AugmentParams.off()`` disables every one."""

    max_rotation_deg: float = 10.0
    horizontal_flip: bool = True
    zoom: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.08
    contrast: tuple[float, float] = (0.85, 1.15)
    gamma: tuple[float, float] = (0.8, 1.25)

    @classmethod
    def off(cls) -> AugmentParams:
        """Identity augmentation (used for validation and evaluation)."""
        return cls(0.0, False, (1.0, 1.0), 0.0, (1.0, 1.0), (1.0, 1.0))

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly record of the ranges (stored in the head's metadata)."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True, slots=True)
class _Draw:
    """The random values of one image's augmentation."""

    angle: float
    scale: float
    flip: bool
    gamma: float
    contrast: float
    shift: float


class RadiographAugment:
    """Random rotation/zoom/flip plus brightness/contrast/gamma on one model input.

    The random values of a batch are drawn in order from the caller's generator, then
    applied in ``workers`` threads (OpenCV and numpy release the GIL): on a GPU the
    augmentation otherwise starves the accelerator, and the result does not depend on
    the number of threads.
    """

    def __init__(self, params: AugmentParams | None = None, workers: int | None = None) -> None:
        self.params = params or AugmentParams()
        self.workers = workers or min(8, os.cpu_count() or 1)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return an augmented copy of ``image`` (same shape, float32, clipped to [0, 1])."""
        return self._apply(_checked(image), self._draw(rng))

    def batch(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment each image of an ``(N, H, W, C)`` batch independently."""
        if not len(images):
            return images
        draws = [self._draw(rng) for _ in range(len(images))]
        checked = [_checked(img) for img in images]
        if self.workers < 2 or len(images) < 2:
            return np.stack([self._apply(img, d) for img, d in zip(checked, draws, strict=True)])
        with ThreadPoolExecutor(min(self.workers, len(images))) as pool:
            return np.stack(list(pool.map(self._apply, checked, draws)))

    def _draw(self, rng: np.random.Generator) -> _Draw:
        p = self.params
        angle = float(rng.uniform(-p.max_rotation_deg, p.max_rotation_deg))
        scale = float(rng.uniform(*p.zoom))
        flip = p.horizontal_flip and bool(rng.integers(0, 2))
        gamma = float(rng.uniform(*p.gamma))
        contrast = float(rng.uniform(*p.contrast))
        shift = float(rng.uniform(-p.brightness, p.brightness))
        return _Draw(angle, scale, flip, gamma, contrast, shift)

    def _apply(self, image: np.ndarray, draw: _Draw) -> np.ndarray:
        out = self._intensity(self._geometric(image, draw), draw)
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)

    @staticmethod
    def _geometric(image: np.ndarray, draw: _Draw) -> np.ndarray:
        if draw.angle == 0.0 and draw.scale == 1.0 and not draw.flip:
            return image.copy()
        rows, cols = image.shape[:2]
        matrix = cv2.getRotationMatrix2D(
            ((cols - 1) / 2.0, (rows - 1) / 2.0), draw.angle, draw.scale
        )
        if draw.flip:
            # x' = (cols - 1) - x composed after the rotation/zoom about the centre.
            matrix[0, :] = -matrix[0, :]
            matrix[0, 2] += cols - 1
        warped = cv2.warpAffine(
            image,
            matrix,
            (cols, rows),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        # OpenCV drops a trailing channel axis of size 1.
        return warped.reshape(image.shape)

    @staticmethod
    def _intensity(image: np.ndarray, draw: _Draw) -> np.ndarray:
        if draw.gamma == 1.0 and draw.contrast == 1.0 and draw.shift == 0.0:
            return image
        out = np.power(np.clip(image, 0.0, 1.0), draw.gamma) if draw.gamma != 1.0 else image
        mean = float(out.mean())
        return (out - mean) * draw.contrast + mean + draw.shift


def _checked(image: np.ndarray) -> np.ndarray:
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    return np.asarray(image, dtype=np.float32)
