"""The scan's pictures: a thumbnail of every ok image, Grad-CAM heatmaps of flagged ones.

- **Thumbnails** (``OUTDIR/thumbnails/<name>.png``, grey, long side <= 256 px): channel 0
  of the model input, letterbox padding cut away, written when the image is queued for
  inference; the part file's row names it, so a resumed scan keeps it.
- **Heatmaps** (``OUTDIR/heatmaps/<name>.png``, long side <= 512 px): the same picture
  with the Grad-CAM map of the abnormal class of the image's bone head blended over it,
  and the map's peak in stored-image pixels (Columns x Rows, through the letterbox). Made
  after the last batch for the images inferred in this run that are scored abnormal
  (probability above the bone's threshold, highest first) and, with
  ``--heatmaps-uncertain N``, the N others closest to their threshold; at most
  ``--heatmaps-max`` of them (0: none). Their model inputs are kept (float16) until then:
  memory for ``max + N`` inputs at most. On ONNX Runtime each map comes with its
  prediction (:class:`~batchfrac.scan.inference.BatchPredictor` with ``cams``), so
  drawing is the overlay and the PNG; otherwise (Keras) the maps are computed then.
- **Names** are the first 24 hex digits of the sha256 of the row's report path and frame
  (the pseudonymised path with ``--pseudonymize-key-file``): never a DICOM value or a
  readable path.
- **Reused rows** (``--previous``, parts): a picture a row names is kept when it is in
  ``OUTDIR``, copied from the previous night's folder when it is there, else the column
  is null. Heatmaps are never in parts: rows from an interrupted run's parts get none.
  Pictures no row names are deleted at the end (:func:`finish_pictures`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from ..atomic import REPORT_FILE_MODE, make_report_dir, write_bytes
from ..enums import Bone, Head
from ..ingest.preprocess import LetterboxGeometry, PreprocessSpec, letterbox_geometry
from ..records import ImageResult, Prediction
from ..report.heatmap import (
    HEATMAPS_DIR,
    THUMBNAILS_DIR,
    heatmap_peak,
    png_bytes,
    render_overlay,
    render_thumbnail,
)

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 256
HEATMAP_SIDE = 512
#: Images per Grad-CAM call (trunk + head) after the scan.
CAM_BATCH = 16
#: What a picture column may hold: one of our folders and a hashed name, nothing else.
_PICTURE = re.compile(rf"^(?:{THUMBNAILS_DIR}|{HEATMAPS_DIR})/[0-9a-f]{{24}}\.png$")


class CamBundle(Protocol):
    """What heatmaps need from :class:`batchfrac.bundle.format.ModelBundle`."""

    @property
    def gradcam_method(self) -> str: ...

    def trunk_features(self, x: np.ndarray) -> list[np.ndarray]: ...

    def gradcam(self, name: Head, features: list[np.ndarray]) -> np.ndarray: ...


#: A drawn heatmap: its path relative to ``OUTDIR`` and its peak (x, y) in stored pixels.
Heatmap = tuple[str, int | None, int | None]


def reported_heatmaps(out: Path) -> dict[str, Heatmap]:
    """The heatmaps that ``out``'s last report (``images.parquet``) names, by picture
    name: read before a scan replaces the report, so that its rows reused from parts keep
    them (the Grad-CAM of an unchanged file under the same settings is the same)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(out / "images.parquet", columns=[*_HEATMAP_KEYS])
    except (OSError, ValueError, pa.ArrowException):
        return {}
    return {
        picture_name(r["path"], r["frame"]): (
            r["heatmap"],
            r["heatmap_peak_x"],
            r["heatmap_peak_y"],
        )
        for r in table.to_pylist()
        if r["heatmap"]
    }


_HEATMAP_KEYS = ("path", "frame", "heatmap", "heatmap_peak_x", "heatmap_peak_y")


def picture_name(report_path: str, frame: int) -> str:
    """The file name stem of a row's pictures: a hash of its report path and frame."""
    return hashlib.sha256(f"{report_path}\0{int(frame)}".encode()).hexdigest()[:24]


@dataclass(order=True)
class _Candidate:
    priority: float
    name: str = field(compare=False)
    bone: Bone = field(compare=False)
    geometry: LetterboxGeometry = field(compare=False)
    image: np.ndarray = field(compare=False, repr=False)
    #: Its Grad-CAM map when inference made it (ONNX Runtime); else drawn at the end.
    cam: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass
class HeatmapStats:
    """``run.json``'s ``heatmaps``."""

    written: int = 0
    left_out: int = 0
    seconds: float = 0.0
    method: str | None = None
    flagged: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"written": self.written, "left_out": self.left_out, "flagged": self.flagged,
                "seconds": round(self.seconds, 3), "method": self.method}  # fmt: skip


class Pictures:
    """Thumbnails as images are queued; heatmap candidates as predictions come back."""

    def __init__(
        self,
        out: Path,
        spec: PreprocessSpec,
        thresholds: Mapping[Bone, float],
        name_of: Callable[[str, int], str],
        *,
        heatmaps_max: int,
        uncertain: int = 0,
    ) -> None:
        self.out = Path(out)
        self.spec = spec
        self.thresholds = dict(thresholds)
        self.name_of = name_of
        self.heatmaps_max = heatmaps_max
        self.uncertain = uncertain
        #: Names of the images inferred in this run (their earlier heatmaps are stale).
        self.inferred: set[str] = set()
        self._held: dict[Any, tuple[str, LetterboxGeometry, np.ndarray]] = {}
        self._thumbnails: dict[Any, str] = {}
        self._abnormal: list[_Candidate] = []  # min-heap on probability
        self._close: list[_Candidate] = []  # min-heap on -distance to the threshold
        self.abnormal = 0
        self.others = 0
        self.stats = HeatmapStats()
        make_report_dir(self.out / THUMBNAILS_DIR)

    def hold(self, key: Any, result: ImageResult) -> None:
        """Write the thumbnail of an ok image and keep its input until it is predicted."""
        if result.pixels is None or result.header is None:
            return
        name = self.name_of(result.file.path, result.frame)
        geometry = letterbox_geometry(result.header.rows, result.header.columns, self.spec)
        image = np.asarray(result.pixels, np.float32)  # the row's own array: no copy
        picture = render_thumbnail(image[geometry.content][..., 0], THUMBNAIL_SIDE)
        relative = f"{THUMBNAILS_DIR}/{name}.png"
        write_bytes(self.out / relative, png_bytes(picture), mode=REPORT_FILE_MODE)
        self._thumbnails[key] = relative
        self._held[key] = (name, geometry, image)
        self.inferred.add(name)

    def thumbnail(self, key: Any) -> str | None:
        """The thumbnail's path relative to ``OUTDIR`` (once: the key is forgotten)."""
        return self._thumbnails.pop(key, None)

    def predicted(self, key: Any, prediction: Prediction) -> None:
        """A held image's prediction: keep its input if it may get a heatmap."""
        held = self._held.pop(key, None)
        if held is None:
            return
        name, geometry, image = held
        p, threshold = prediction.abnormal_probability, self.thresholds[prediction.bone]
        if p > threshold:
            self.abnormal += 1
            self._push(self._abnormal, _Candidate(p, name, prediction.bone, geometry, image,
                       prediction.cam), self.heatmaps_max)  # fmt: skip
        else:
            self.others += 1
            close = _Candidate(-abs(p - threshold), name, prediction.bone, geometry, image,
                               prediction.cam)  # fmt: skip
            self._push(self._close, close, min(self.uncertain, self.heatmaps_max))

    @staticmethod
    def _push(heap: list[_Candidate], candidate: _Candidate, size: int) -> None:
        if size <= 0 or (len(heap) >= size and not candidate > heap[0]):
            return
        kept = dataclasses.replace(candidate, image=candidate.image.astype(np.float16))
        if len(heap) < size:
            heapq.heappush(heap, kept)
        else:
            heapq.heapreplace(heap, kept)

    def make_heatmaps(
        self, bundle: CamBundle, earlier: Mapping[str, Heatmap] | None = None
    ) -> dict[str, Heatmap]:
        """Draw the chosen heatmaps: picture name -> (path relative to ``OUTDIR``, peak x,
        peak y), plus the ``earlier`` ones (:func:`reported_heatmaps`) of images not
        inferred in this run. Counts what was written and left out in :attr:`stats`."""
        made = {k: v for k, v in (earlier or {}).items() if k not in self.inferred}
        chosen = sorted(self._abnormal, reverse=True) + sorted(self._close, reverse=True)
        chosen = chosen[: max(0, self.heatmaps_max)]
        self._abnormal, self._close = [], []
        flagged = self.abnormal + min(self.uncertain, self.others)
        self.stats = HeatmapStats(flagged=flagged, left_out=flagged - len(chosen))
        if not chosen:
            return made
        started = time.perf_counter()
        self.stats.method = bundle.gradcam_method
        make_report_dir(self.out / HEATMAPS_DIR)
        for c in chosen:  # their maps came with their predictions
            if c.cam is not None:
                made[c.name] = self._write_heatmap(c, c.cam)
        for bone in Bone:  # the others' are computed now (Keras: autodiff)
            group = [c for c in chosen if c.bone is bone and c.cam is None]
            for start in range(0, len(group), CAM_BATCH):
                batch = group[start : start + CAM_BATCH]
                x = np.stack([c.image.astype(np.float32) for c in batch])
                cams = bundle.gradcam(bone.head, bundle.trunk_features(x))
                for candidate, cam in zip(batch, cams, strict=True):
                    made[candidate.name] = self._write_heatmap(candidate, cam)
        self.stats.written = len(chosen)
        self.stats.seconds = time.perf_counter() - started
        log.info("heatmaps: %d written, %d left out (--heatmaps-max %d), %.1f s (%s)",
                 len(made), self.stats.left_out, self.heatmaps_max, self.stats.seconds,
                 self.stats.method)  # fmt: skip
        return made

    def _write_heatmap(self, c: _Candidate, cam: np.ndarray) -> Heatmap:
        display = c.image.astype(np.float32)[c.geometry.content][..., 0]
        picture = render_overlay(display, cam, c.geometry, HEATMAP_SIDE)
        relative = f"{HEATMAPS_DIR}/{c.name}.png"
        write_bytes(self.out / relative, png_bytes(picture), mode=REPORT_FILE_MODE)
        peak = heatmap_peak(cam, c.geometry)
        return (relative, *peak) if peak is not None else (relative, None, None)


def finish_pictures(
    out: Path,
    images: pa.Table,
    heatmaps: Mapping[str, Heatmap],
    previous: Path | None = None,
) -> pa.Table:
    """``images`` with this run's heatmaps filled in and every picture column checked: a
    named picture missing from ``out`` is copied from ``previous`` (the ``--previous``
    folder) or its column set to null. Pictures in ``out`` that no row names are deleted."""
    names = ("path", "frame", "thumbnail", "heatmap", "heatmap_peak_x", "heatmap_peak_y")
    columns = {c: images.column(c).to_pylist() for c in names}
    for i, (path, frame) in enumerate(zip(columns["path"], columns["frame"], strict=True)):
        made = heatmaps.get(picture_name(path, frame))
        if made is not None:
            columns["heatmap"][i], columns["heatmap_peak_x"][i], columns["heatmap_peak_y"][i] = made
        if not _present(out, columns["thumbnail"][i], previous):
            columns["thumbnail"][i] = None
        if not _present(out, columns["heatmap"][i], previous):
            for name in names[3:]:
                columns[name][i] = None
    for name in ("thumbnail", "heatmap", "heatmap_peak_x", "heatmap_peak_y"):
        position = images.schema.get_field_index(name)
        field_ = images.schema.field(position)
        images = images.set_column(position, field_, pa.array(columns[name], field_.type))
    named = {p for p in columns["thumbnail"] + columns["heatmap"] if p}
    for folder in (THUMBNAILS_DIR, HEATMAPS_DIR):
        if (out / folder).is_dir():
            for file in (out / folder).iterdir():
                if f"{folder}/{file.name}" not in named:
                    file.unlink(missing_ok=True)
    return images


def _present(out: Path, relative: str | None, previous: Path | None) -> bool:
    """Whether the picture ``relative`` is in ``out`` (after copying it from ``previous``)."""
    if not relative or not _PICTURE.match(relative):
        return False
    target = out / relative
    if target.is_file():
        return True
    source = previous / relative if previous is not None else None
    if source is None or not source.is_file():
        return False
    make_report_dir(target.parent)
    data = source.read_bytes()
    write_bytes(target, data, mode=REPORT_FILE_MODE)
    return True
