"""The pointing game of ``batchfrac evaluate``: does a bone head's Grad-CAM peak fall on
the labelled abnormality?

For every image labelled abnormal whose labels CSV row carries a box
(:data:`batchfrac.localisation.BOX_COLUMNS`, as ``batchfrac synth`` writes them), the
image's true bone's head (the oracle head, as in the per-bone tables) gives a Grad-CAM
map of the abnormal class; its peak, mapped back to stored pixels through the
preprocessing's letterbox geometry, is compared with the box (see
:mod:`batchfrac.localisation`). Images are taken as scored, whatever the head decided.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..enums import Bone, Label
from ..localisation import PointingCase, heatmap_peak, read_boxes
from ..preprocess import letterbox_geometry
from .batches import ImageLoader
from .bundle import ModelBundle
from .data import Dataset, Sample
from .gradcam import Score, gradcam

#: What the pointing game differentiates (see :class:`Score` for why).
POINTING_SCORE = Score.LOG_ODDS
#: ``(rows, columns)`` of a sample's stored image.
ImageSize = Callable[[Sample], tuple[int, int]]


def dicom_size(sample: Sample) -> tuple[int, int]:
    """(0028,0010) *Rows* and (0028,0011) *Columns* of a sample's DICOM file: the pixel
    grid the labels' boxes are drawn in, even when decoding reduced the resolution."""
    from ..header import read_header

    header = read_header(Path(sample.path))
    return header.rows, header.columns


def pointing_cases(
    bundle: ModelBundle,
    dataset: Dataset,
    loader: ImageLoader,
    labels_csv: Path,
    image_size: ImageSize = dicom_size,
    batch_size: int = 32,
    score: Score = POINTING_SCORE,
) -> list[PointingCase]:
    """One :class:`PointingCase` per abnormal image with a box and a head for its bone,
    in data set order (an empty list when the CSV has no boxes)."""
    boxes = read_boxes(labels_csv)
    present = set(bundle.heads())
    wanted = [
        s
        for s in dataset.samples
        if s.label is Label.ABNORMAL and s.rel in boxes and s.bone.value in present
    ]
    found: dict[int, PointingCase] = {}
    for bone in Bone:  # one head per batch
        mine = [i for i, s in enumerate(wanted) if s.bone is bone]
        for start in range(0, len(mine), batch_size):
            batch = mine[start : start + batch_size]
            samples = [wanted[i] for i in batch]
            features = bundle.trunk_features(loader.load_many(samples))
            maps = gradcam(bundle.runtime.head(bone.value), features, score=score)
            for i, sample, cam in zip(batch, samples, maps, strict=True):
                rows, columns = image_size(sample)
                geometry = letterbox_geometry(rows, columns, bundle.spec)
                peak = heatmap_peak(cam, geometry)
                found[i] = PointingCase(
                    sample.rel, bone.value, boxes[sample.rel], rows, columns, peak
                )
    return [found[i] for i in range(len(wanted))]
