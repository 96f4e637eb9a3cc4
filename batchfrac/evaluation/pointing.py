"""The pointing game of ``batchfrac evaluate``: does a bone head's Grad-CAM peak fall on
the labelled abnormality?

For every image labelled abnormal whose labels CSV row carries a box
(:data:`BOX_COLUMNS`, as ``batchfrac synth`` writes them), the
image's true bone's head (the oracle head, as in the per-bone tables) gives a Grad-CAM
map of the abnormal class; its peak, mapped back to stored pixels through the
preprocessing's letterbox geometry, is compared with the box (see
:mod:`batchfrac.report.heatmap`). Images are taken as scored, whatever the head decided.

The pointing game (Zhang et al., "Top-down neural attention by excitation backprop",
2016) counts a hit when the heatmap's peak falls inside the annotated box. Its chance
level is the share of the image a box covers: a uniformly random point lands in the box
with probability box area / image area.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bundle.format import ModelBundle
from ..datasets.archive import Box, read_boxes
from ..datasets.loader import ImageLoader
from ..datasets.samples import Dataset, Sample
from ..enums import Bone, CamScore, Label
from ..ingest.preprocess import letterbox_geometry
from ..report.heatmap import heatmap_peak

#: Default growth of a box for the "or near" count: this share of the image's long side.
NEAR_MARGIN = 0.10
#: The pooled row of :func:`pointing_rows`.
OVERALL = "overall"


@dataclass(frozen=True)
class PointingCase:
    """One abnormal image in the pointing game: its box, its image size and its peak."""

    key: str
    bone: str
    box: Box
    rows: int
    columns: int
    peak: tuple[int, int] | None

    def margin(self, share: float = NEAR_MARGIN) -> int:
        """The "near" margin in pixels: ``share`` of the image's long side."""
        return int(round(share * max(self.rows, self.columns)))

    def near_box(self, share: float = NEAR_MARGIN) -> Box:
        """The box grown by :meth:`margin`, cut to the image."""
        return self.box.grown(self.margin(share), self.rows, self.columns)

    def hit(self, share: float | None = None) -> bool:
        """Peak inside the box (``share`` None) or inside the box grown by ``share``."""
        if self.peak is None:
            return False
        box = self.box if share is None else self.near_box(share)
        return box.contains(*self.peak)

    def chance(self, share: float | None = None) -> float:
        """Probability that a uniformly random pixel of the image lands in the (grown) box."""
        box = self.box if share is None else self.near_box(share)
        return box.area / (self.rows * self.columns)


#: Columns of :func:`pointing_rows` (and of ``pointing.csv``).
POINTING_COLUMNS = (
    "bone",
    "n",
    "hits",
    "hit_rate",
    "chance",
    "near_hits",
    "near_hit_rate",
    "near_chance",
    "near_margin",
    "no_peak",
)


def _row(bone: str, cases: Sequence[PointingCase], share: float) -> dict[str, object]:
    n = len(cases)
    hits = sum(c.hit() for c in cases)
    near = sum(c.hit(share) for c in cases)
    return {
        "bone": bone,
        "n": n,
        "hits": hits,
        "hit_rate": hits / n,
        "chance": float(np.mean([c.chance() for c in cases])),
        "near_hits": near,
        "near_hit_rate": near / n,
        "near_chance": float(np.mean([c.chance(share) for c in cases])),
        "near_margin": share,
        "no_peak": sum(c.peak is None for c in cases),
    }


@dataclass(frozen=True)
class PointingGame:
    """The cases of one pointing game and the "near" margin it is reported with."""

    cases: tuple[PointingCase, ...]
    margin: float = NEAR_MARGIN

    def rows(self, bones: Sequence[str] = ()) -> list[dict[str, object]]:
        """Per bone and overall, see :func:`pointing_rows`."""
        return pointing_rows(self.cases, self.margin, bones)

    def image_rows(self) -> list[dict[str, object]]:
        """One JSON-ready record per image: its box, peak and verdicts."""
        return [
            {
                "path": c.key,
                "bone": c.bone,
                "rows": c.rows,
                "columns": c.columns,
                "box": [c.box.x0, c.box.y0, c.box.x1, c.box.y1],
                "peak": None if c.peak is None else list(c.peak),
                "hit": c.hit(),
                "near_hit": c.hit(self.margin),
            }
            for c in self.cases
        ]


def pointing_rows(
    cases: Iterable[PointingCase], share: float = NEAR_MARGIN, bones: Sequence[str] = ()
) -> list[dict[str, object]]:
    """Per bone (in ``bones`` order, then any other in sorted order) and ``overall``
    (pooled): hits inside the box and inside the box grown by ``share`` of the image's
    long side, each beside its chance level (mean box area / image area)."""
    if not 0.0 <= share or math.isnan(share):
        raise ValueError(f"margin share must be >= 0, got {share}")
    cases = list(cases)
    present = {c.bone for c in cases}
    order = [b for b in bones if b in present] + sorted(present - set(bones))
    rows = [_row(b, [c for c in cases if c.bone == b], share) for b in order]
    if cases:
        rows.append(_row(OVERALL, cases, share))
    return rows


#: What the pointing game differentiates (see :class:`~batchfrac.enums.CamScore` for why).
POINTING_SCORE = CamScore.LOG_ODDS
#: ``(rows, columns)`` of a sample's stored image.
ImageSize = Callable[[Sample], tuple[int, int]]


def dicom_size(sample: Sample) -> tuple[int, int]:
    """(0028,0010) *Rows* and (0028,0011) *Columns* of a sample's DICOM file: the pixel
    grid the labels' boxes are drawn in, even when decoding reduced the resolution."""
    from ..ingest.header import read_header

    header = read_header(Path(sample.path))
    return header.rows, header.columns


def pointing_cases(
    bundle: ModelBundle,
    dataset: Dataset,
    loader: ImageLoader,
    labels_csv: Path,
    image_size: ImageSize = dicom_size,
    batch_size: int = 32,
    score: CamScore = POINTING_SCORE,
) -> list[PointingCase]:
    """One :class:`PointingCase` per abnormal image with a box and a head for its bone,
    in data set order (an empty list when the CSV has no boxes)."""
    from ..bundle.gradcam import gradcam

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
