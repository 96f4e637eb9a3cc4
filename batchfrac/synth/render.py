"""Compose one synthetic radiograph: skeleton -> attenuation -> processed display image.

Everything is drawn at a modest internal resolution (long side <= 640 px), then upscaled
to the requested size, where detector noise is added at full resolution; a
2000x2500 image takes a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..enums import Bone
from .abnormal import Abnormality, Injury, fracture, fracture_extent, fracture_site, hardware
from .anatomy import Tissue, View, build_skeleton
from .raster import add_piece, bone_mask, fill, piece_attenuation, soft_tissue, texture_field
from .shapes import Piece, apply, similarity

#: Long side of the internal drawing canvas (pixels).
INTERNAL_SIDE = 640
#: Metal attenuation (see :func:`.abnormal.hardware`) counted as hardware in the truth box.
_METAL_EXTENT = 0.1

#: ``(x0, y0, x1, y1)`` in stored-image pixels: x = column, y = row, x1/y1 exclusive.
PixelBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class Placement:
    """Where the anatomy lands on the canvas: pixel <- anatomy matrix and scale."""

    matrix: np.ndarray
    unit_px: float


def _placement(
    shape: tuple[int, int], aspect: float, mirror: bool, rng: np.random.Generator
) -> Placement:
    h, w = shape
    unit_px = min(h, w / aspect) * rng.uniform(0.88, 1.0)
    angle = rng.uniform(-8.0, 8.0)
    centre = (w / 2 + rng.uniform(-0.04, 0.04) * w, h / 2 + rng.uniform(-0.04, 0.04) * h)
    place = np.vstack([similarity(angle, unit_px, centre), [0.0, 0.0, 1.0]])
    flip = np.array([[-1.0 if mirror else 1.0, 0.0, 0.0], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    return Placement(matrix=(place @ flip)[:2], unit_px=float(unit_px))


def _collimate(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Blank the border outside a rectangular, slightly rotated, collimated field.

    The blank is one constant value, as detectors with electronic shutters write it.
    Returns the image and the field (uint8, 1 inside).
    """
    h, w = img.shape
    margins = [0.0 if rng.random() < 0.35 else rng.uniform(0.02, 0.08) for _ in range(4)]
    left, right, top, bottom = margins
    field = np.array(
        [[left * w, top * h], [(1 - right) * w, top * h], [(1 - right) * w, (1 - bottom) * h],
         [left * w, (1 - bottom) * h]]
    )  # fmt: skip
    centre = field.mean(axis=0)
    rot = similarity(rng.uniform(-2.0, 2.0), 1.0, (0.0, 0.0))
    field = apply(rot, field - centre) + centre
    mask = np.zeros((h, w), np.uint8)
    fill(mask, field)
    blank = np.float32(rng.uniform(0.0, 0.05))
    return np.where(mask > 0, img, blank).astype(np.float32), mask


def _marker(img: np.ndarray, side: str, rng: np.random.Generator) -> None:
    """Burn a lead side marker ("L"/"R") into a top corner, in place."""
    h, w = img.shape
    scale = 0.05 * h / 22.0
    thick = max(1, int(round(scale * 2.2)))
    (tw, th), _ = cv2.getTextSize(side, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    inset_x, inset_y = int(rng.uniform(0.1, 0.16) * w), int(rng.uniform(0.1, 0.15) * h)
    x = inset_x if rng.random() < 0.5 else w - inset_x - tw
    y = inset_y + th
    mask = np.zeros((h, w), np.uint8)
    cv2.putText(mask, side, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thick, cv2.LINE_AA)
    if rng.random() < 0.5:
        pad = max(2, th // 3)
        cv2.rectangle(
            mask, (x - pad, y - th - pad), (x + tw + pad, y + pad), 255, max(1, thick // 2)
        )
    np.maximum(img, mask.astype(np.float32) / 255.0 * 0.97, out=img)


def _swelling(tissue: np.ndarray, hurt: Piece, injury: Injury) -> np.ndarray:
    """``tissue`` with the swelling of an acute fracture: thicker, the outline bulging."""
    x, y = fracture_site(hurt, injury, tissue.shape)
    yy, xx = np.ogrid[: tissue.shape[0], : tissue.shape[1]]
    r = max(3.5 * hurt.half_width, 0.045 * tissue.shape[0])
    blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * r * r))
    size = 2 * int(r) + 1
    grown = cv2.dilate((tissue > 0).astype(np.uint8), np.ones((size, size), np.uint8))
    near = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), max(r / 4, 1.0))
    return (tissue + 0.45 * blob * near).astype(np.float32)


def _box(extent: np.ndarray, size: tuple[int, int], field: np.ndarray) -> PixelBox | None:
    """Bounding box, in the final image, of a canvas mask resized like the image and cut
    by the collimated ``field``; ``None`` when nothing of it is left."""
    rows, cols = size
    if extent.shape != (rows, cols):
        extent = cv2.resize(extent, (cols, rows), interpolation=cv2.INTER_LINEAR)
    ys, xs = np.nonzero((extent >= 0.5) & (field > 0))
    if xs.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render_view(
    bone: Bone,
    view: View,
    size: tuple[int, int],
    anatomy_rng: np.random.Generator,
    image_rng: np.random.Generator,
    injury: Injury | None,
    side: str,
) -> np.ndarray:
    """One radiograph from explicit random streams (see :func:`render_radiograph`).

    ``anatomy_rng`` shapes the skeleton and its placement, ``image_rng`` the detector
    noise and processing; ``injury`` (drawn once per study) the abnormality; ``side``
    is ``"L"`` or ``"R"`` (right images are mirrored and marked "R").
    """
    return render_view_with_box(bone, view, size, anatomy_rng, image_rng, injury, side)[0]


def render_view_with_box(
    bone: Bone,
    view: View,
    size: tuple[int, int],
    anatomy_rng: np.random.Generator,
    image_rng: np.random.Generator,
    injury: Injury | None,
    side: str,
) -> tuple[np.ndarray, PixelBox | None]:
    """:func:`render_view` and where the abnormality lies in it.

    The box bounds the drawn fracture (the cut edges of both fragments and the gap
    between them, :func:`.abnormal.fracture_extent`) or the metal of the hardware, as
    it appears in the returned image: drawn on the canvas, resized with the image
    (covering at least half of a pixel) and cut by the collimated field. ``None``
    without an injury, or when none of it is left in the image. Computing it draws
    nothing from the random streams: the image is the same as :func:`render_view`'s.
    """
    rows, cols = size
    k = min(1.0, INTERNAL_SIDE / max(rows, cols))
    shape = (max(int(round(rows * k)), 16), max(int(round(cols * k)), 16))
    height = shape[0]
    skeleton = build_skeleton(bone, view, anatomy_rng)
    place = _placement(shape, skeleton.aspect, side == "R", anatomy_rng)
    pieces = [p.transformed(place.matrix) for p in skeleton.pieces]
    unit = 2.0 * skeleton.ref_width * place.unit_px
    texture = texture_field(shape, anatomy_rng, grain=max(0.6, place.unit_px * 0.0016))
    tissue_extra = [Tissue(apply(place.matrix, t.outline), t.weight) for t in skeleton.tissue]
    tissue = soft_tissue(
        bone_mask(pieces, shape), skeleton.margin * place.unit_px, tissue_extra, anatomy_rng
    )
    gain = anatomy_rng.uniform(1.0, 1.35)
    tissue_mu = anatomy_rng.uniform(0.35, 0.5)
    bone_mu = anatomy_rng.uniform(0.42, 0.55)

    bones = np.zeros(shape, np.float32)
    metal = np.zeros(shape, np.float32)
    extent: np.ndarray | None = None
    target = injury.pick(skeleton.fracture_targets) if injury else None
    if injury is not None and injury.kind is Abnormality.HARDWARE:
        target = injury.pick(skeleton.hardware_targets)
    for piece in pieces:
        if piece.name != target or injury is None:
            add_piece(bones, piece, unit, texture)
        elif injury.kind is Abnormality.FRACTURE:
            intact = piece_attenuation(piece, shape, unit, texture)
            bones += fracture(intact, piece, injury, height)
            extent = fracture_extent(intact, piece, injury, height)
        else:
            add_piece(bones, piece, unit, texture)
            metal, _ = hardware(shape, piece, injury, height)
            extent = (metal > _METAL_EXTENT).astype(np.float32)
    if injury is not None and injury.kind is Abnormality.FRACTURE and target is not None:
        tissue = _swelling(tissue, next(p for p in pieces if p.name == target), injury)

    att = tissue_mu * tissue + bone_mu * bones + metal
    img = 1.0 - np.exp(-gain * att)
    sharpen = image_rng.uniform(0.3, 0.8)
    img = img + sharpen * (img - cv2.GaussianBlur(img, (0, 0), max(1.0, 0.012 * height)))
    air = image_rng.uniform(0.03, 0.12)
    img = (air + (1.0 - air) * np.clip(img, 0.0, 1.0)).astype(np.float32)
    _marker(img, side, image_rng)

    out = (
        img
        if shape == (rows, cols)
        else cv2.resize(img, (cols, rows), interpolation=cv2.INTER_LINEAR)
    )
    # detector noise: mostly spatially correlated grain (the detector's MTF), a little white
    grain_shape = (max(rows // 3, 1), max(cols // 3, 1))
    coarse = image_rng.standard_normal(grain_shape, dtype=np.float32)
    grain = cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_LINEAR)
    out = out + image_rng.uniform(0.002, 0.006) * grain
    white = image_rng.uniform(0.001, 0.0025)
    out = out + white * image_rng.standard_normal(out.shape, dtype=np.float32)
    out, field = _collimate(np.clip(out, 0.0, 1.0), image_rng)
    box = None if extent is None else _box(extent, (rows, cols), field)
    return out.astype(np.float32, copy=False), box


def render_radiograph(
    bone: Bone | str,
    rng: np.random.Generator,
    size: tuple[int, int],
    abnormal: str | None = None,
    view: str = "AP",
    *,
    laterality: str | None = None,
) -> np.ndarray:
    """A synthetic radiograph of ``bone``: float32 (rows, cols) in [0, 1], bone bright.

    ``abnormal`` is ``None`` (normal), ``"fracture"`` or ``"hardware"``; ``view`` one of
    AP/PA/LAT/OBL; ``laterality`` "L"/"R" (drawn from ``rng`` when ``None``). The
    anatomy, the abnormality and the noise come from independent child streams of
    ``rng``, so the same ``rng`` state with and without ``abnormal`` gives the same
    anatomy: the images differ only by the abnormality.
    """
    anatomy_rng, injury_rng, image_rng = rng.spawn(3)
    coin = injury_rng.random()  # drawn first so the injury stream is the same either way
    side = laterality if laterality is not None else ("L" if coin < 0.5 else "R")
    injury = None if abnormal is None else Injury.draw(abnormal, injury_rng)
    return render_view(Bone(bone), View(view), size, anatomy_rng, image_rng, injury, side)
