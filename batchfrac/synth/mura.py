"""Write a synthetic dataset in the exact MURA-v1.1 layout (8-bit grey PNGs).

``OUT/MURA-v1.1/{train,valid}/XR_<PART>/patientNNNNN/studyK_{positive,negative}/imageM.png``
with the four headerless CSVs of the real dataset, e.g. ``train_image_paths.csv``::

    MURA-v1.1/train/XR_HAND/patient00001/study1_positive/image1.png

and ``train_labeled_studies.csv``::

    MURA-v1.1/train/XR_HAND/patient00001/study1_positive/,1

(label 1 = abnormal). Patients never appear in both splits. With junk on, one study
folder holds a macOS ``._image1.png`` companion that readers must skip. ``OUT`` also
gets ``ground_truth.csv`` (:data:`MURA_TRUTH_COLUMNS`) and ``junk.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ..datasets.archive import BOX_COLUMNS
from ..enums import Reason
from .archive import (
    Progress,
    box_fields,
    check_empty,
    render_planned_with_box,
    write_answers,
)
from .config import Layout, Syntax, SynthConfig, SynthSummary
from .junk import JunkFile, apple_double_bytes, write_bytes
from .parallel import ordered_map
from .plan import ImagePlan, StudyPlan, plan_archive, stream
from .render import PixelBox

ROOT = "MURA-v1.1"
SPLITS = ("train", "valid")
#: Columns of ``ground_truth.csv`` in the MURA layout, one row per PNG.
MURA_TRUTH_COLUMNS = (
    "path",  # MURA-v1.1/... as in *_image_paths.csv
    "split",  # train | valid
    "bone",  # Bone value
    "patient",  # patientNNNNN
    "study",  # the study folder, as in *_labeled_studies.csv (trailing "/")
    "label",  # 1 abnormal, 0 normal
    "abnormality",  # fracture | hardware | ""
    "abnormality_visible",  # 1 if drawn in this image
    "view",  # AP | PA | LAT | OBL
    *BOX_COLUMNS,  # the abnormality's box in PNG pixels, as in the DICOM layout
)


@dataclass(frozen=True)
class MuraStudy:
    """Where one planned study lands in the MURA tree."""

    plan: StudyPlan
    split: str
    patient: int
    number: int  # K in studyK_...

    @property
    def folder(self) -> str:
        """``MURA-v1.1/<split>/XR_<PART>/patientNNNNN/studyK_<positive|negative>/``."""
        suffix = "negative" if self.plan.abnormality is None else "positive"
        return (
            f"{ROOT}/{self.split}/{self.plan.bone.mura_part}/patient{self.patient:05d}/"
            f"study{self.number}_{suffix}/"
        )


def valid_indices(n: int, rng: np.random.Generator) -> set[int]:
    """Studies of the valid split: ~10%, and one of each bone when ``n >= 14``.

    The plan's first seven studies are one of each bone (see ``bone_sequence``), and
    so are the next seven, which stay in train.
    """
    if n < 2:
        return set()
    want = max(round(0.1 * n), 7 if n >= 14 else 1)
    chosen = set(range(7)) if n >= 14 else set()
    rest = [i for i in rng.permutation(n) if i >= 14 or n < 14]
    for i in rest:
        if len(chosen) >= want:
            break
        chosen.add(int(i))
    return chosen


def plan_mura(config: SynthConfig) -> list[MuraStudy]:
    """Split and group the planned studies into MURA patients (1-2 studies each)."""
    lo, hi = config.mura_sides
    plans = plan_archive(replace(config, min_size=lo, max_size=hi), (Syntax.EXPLICIT,))
    rng = stream(config.seed, 6)
    valid = valid_indices(len(plans), rng)
    out: list[MuraStudy] = []
    patient = 0
    for split in SPLITS:
        members = [p for p in plans if (p.index in valid) == (split == "valid")]
        for bone in sorted({p.bone for p in members}, key=lambda b: b.value):
            queue = [p for p in members if p.bone is bone]
            while queue:
                patient += 1
                take = 2 if len(queue) > 1 and rng.random() < 0.3 else 1
                for k, plan in enumerate(queue[:take]):
                    out.append(MuraStudy(plan=plan, split=split, patient=patient, number=k + 1))
                queue = queue[take:]
    return out


def _draw_png(job: tuple[StudyPlan, ImagePlan, int]) -> tuple[bytes, PixelBox | None]:
    pixels, box = render_planned_with_box(*job)
    return _png(pixels), box


def generate_mura(
    out: Path, config: SynthConfig, progress: Progress | None = None, jobs: int = 1
) -> SynthSummary:
    """Write a synthetic MURA-v1.1 tree under the empty (or new) folder ``out``.

    ``jobs`` processes draw the images (same bytes whatever their number).
    """
    check_empty(out)
    studies = plan_mura(config)
    total = sum(len(s.plan.images) for s in studies)
    paths: dict[str, list[str]] = {s: [] for s in SPLITS}
    labeled: dict[str, list[str]] = {s: [] for s in SPLITS}
    truth: list[dict[str, object]] = []
    done = 0
    drawn = ordered_map(
        _draw_png, ((s.plan, image, config.seed) for s in studies for image in s.plan.images), jobs
    )
    for study in studies:
        plan = study.plan
        label = 0 if plan.abnormality is None else 1
        labeled[study.split].append(f"{study.folder},{label}")
        for image in plan.images:
            path = f"{study.folder}image{image.number}.png"
            png, box = next(drawn)
            write_bytes(out, path, png)
            paths[study.split].append(path)
            truth.append(
                {
                    "path": path,
                    "split": study.split,
                    "bone": plan.bone.value,
                    "patient": f"patient{study.patient:05d}",
                    "study": study.folder,
                    "label": label,
                    "abnormality": "" if plan.abnormality is None else plan.abnormality.value,
                    "abnormality_visible": int(image.visible),
                    "view": image.view.value,
                    **box_fields(box),
                }
            )
            done += 1
            if progress is not None:
                progress(done, total)
    for split in SPLITS:
        _write_lines(out / ROOT / f"{split}_image_paths.csv", paths[split])
        _write_lines(out / ROOT / f"{split}_labeled_studies.csv", labeled[split])
    junk: list[JunkFile] = []
    if config.junk:
        target = f"{studies[0].folder}._image1.png"
        write_bytes(out, target, apple_double_bytes())
        junk.append(JunkFile(target, Reason.NOT_DICOM, "macOS AppleDouble companion"))
    write_answers(out, MURA_TRUTH_COLUMNS, truth, junk, "dataset")
    return SynthSummary(
        out=out,
        layout=Layout.MURA,
        patients=len({s.patient for s in studies}),
        studies=len(studies),
        images=len(truth),
        abnormal_studies=sum(s.plan.abnormality is not None for s in studies),
        junk_files=len(junk),
    )


def _png(pixels: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8))
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return buf.tobytes()


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
