"""Write a synthetic DICOM archive: folders of CR/DX files, junk, DICOMDIR, ground truth.

Layout under ``OUT``:

* ``<PatientID>/<StudyDate>_<Accession>/SE<n>_<Modality>/`` holding files named
  ``IM000001`` (no extension, even-numbered studies) or ``<SOPInstanceUID>.dcm``;
* with junk on, every third patient as a "CD import": ``PT000000/ST000000/SE000000/
  IM000000`` written through ``pydicom.fileset.FileSet`` and referenced by the root
  ``DICOMDIR``;
* ``ground_truth.csv``: one row per image file (columns in :data:`GROUND_TRUTH_COLUMNS`);
* ``junk.csv``: every other file with the reason a scan should report
  (``not_dicom``, ``dicomdir``, ``truncated``), the two CSVs included.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import UID

from ..datasets.archive import BOX_COLUMNS
from ..enums import Reason
from .abnormal import Injury
from .config import Layout, Syntax, SynthConfig, SynthSummary
from .dicom import build_dataset, encode, jpeg_lossless_available
from .junk import JunkFile, write_clutter, write_truncated
from .parallel import ordered_map
from .plan import ImagePlan, StudyPlan, plan_archive, stream, uid
from .render import PixelBox, render_view_with_box

Progress = Callable[[int, int], None]


#: Columns of ``ground_truth.csv``, one row per image file.
GROUND_TRUTH_COLUMNS = (
    "path",  # relative to the archive root, "/"-separated
    "patient_id",  # (0010,0020)
    "study_instance_uid",  # (0020,000D)
    "series_instance_uid",  # (0020,000E)
    "sop_instance_uid",  # (0008,0018)
    "bone",  # true study type (Bone value), whatever BodyPartExamined says
    "label",  # study label: normal | abnormal
    "abnormality",  # fracture | hardware | "" for normal studies
    "abnormality_visible",  # 1 if drawn in this image, 0 otherwise
    "view",  # (0018,5101) View Position: AP | PA | LAT | OBL
    "laterality",  # (0020,0062) Image Laterality: L | R
    "body_part_examined",  # (0018,0015) as written; "" when missing (10%), sometimes wrong
    "modality",  # (0008,0060) CR | DX
    "transfer_syntax",  # (0002,0010) Transfer Syntax UID
    "photometric",  # (0028,0004) MONOCHROME1 | MONOCHROME2
    "bits_stored",  # (0028,0101)
    "rows",  # (0028,0010)
    "columns",  # (0028,0011)
    # where the abnormality is drawn, in stored pixels (x = column, y = row; x1, y1
    # exclusive: pixels[y0:y1, x0:x1]); empty when the image shows none
    *BOX_COLUMNS,
)
JUNK_COLUMNS = ("path", "reason", "description")


def usable_syntaxes(wanted: tuple[Syntax, ...]) -> tuple[tuple[Syntax, ...], tuple[Syntax, ...]]:
    """(syntaxes that can be encoded here, requested ones that cannot)."""
    skipped = tuple(
        s for s in wanted if s is Syntax.JPEG_LOSSLESS and not jpeg_lossless_available()
    )
    usable = tuple(s for s in wanted if s not in skipped)
    if not usable:
        raise RuntimeError(f"none of the requested transfer syntaxes can be encoded: {wanted}")
    return usable, skipped


def render_planned(study: StudyPlan, image: ImagePlan, seed: int) -> np.ndarray:
    """The display image of one planned image (float [0, 1], bone bright).

    The injury is drawn from the study's stream, so all views share it.
    """
    return render_planned_with_box(study, image, seed)[0]


def render_planned_with_box(
    study: StudyPlan, image: ImagePlan, seed: int
) -> tuple[np.ndarray, PixelBox | None]:
    """:func:`render_planned` and the abnormality's box in it (see
    :func:`.render.render_view_with_box`); ``None`` when the image shows none."""
    injury = None
    if study.abnormality is not None and image.visible:
        injury = Injury.draw(study.abnormality, stream(seed, 4, study.index))
    return render_view_with_box(
        study.bone,
        image.view,
        (image.rows, image.columns),
        stream(seed, 2, study.index, image.number),
        stream(seed, 3, study.index, image.number),
        injury,
        study.side,
    )


def make_instance(study: StudyPlan, image: ImagePlan, seed: int) -> Dataset:
    """Render and encode one image of ``study`` (deterministic in ``seed``)."""
    pixels = render_planned(study, image, seed)
    return encode(build_dataset(pixels, study, image, seed), image.syntax)


def _make_instance(job: tuple[StudyPlan, ImagePlan, int]) -> tuple[Dataset, PixelBox | None]:
    pixels, box = render_planned_with_box(*job)
    study, image, seed = job
    return encode(build_dataset(pixels, study, image, seed), image.syntax), box


def box_fields(box: PixelBox | None) -> dict[str, object]:
    """The :data:`BOX_COLUMNS` of a truth row (empty strings without a box)."""
    return dict(zip(BOX_COLUMNS, box if box is not None else ("",) * 4, strict=True))


def own_path(study: StudyPlan, image: ImagePlan) -> str:
    """Relative path of an image outside the DICOMDIR part of the archive."""
    folder = (
        f"{study.patient.patient_id}/{study.study_date}_{study.accession}/"
        f"SE{image.series}_{study.modality}"
    )
    name = f"IM{image.number:06d}" if study.index % 2 == 0 else f"{image.sop_instance_uid}.dcm"
    return f"{folder}/{name}"


def _truth_row(
    path: str, study: StudyPlan, image: ImagePlan, box: PixelBox | None
) -> dict[str, object]:
    return {
        "path": path,
        "patient_id": study.patient.patient_id,
        "study_instance_uid": study.study_instance_uid,
        "series_instance_uid": image.series_instance_uid,
        "sop_instance_uid": image.sop_instance_uid,
        "bone": study.bone.value,
        "label": study.label,
        "abnormality": "" if study.abnormality is None else study.abnormality.value,
        "abnormality_visible": int(image.visible),
        "view": image.view.value,
        "laterality": study.side,
        "body_part_examined": study.body_part or "",
        "modality": study.modality,
        "transfer_syntax": str(image.syntax.uid),
        "photometric": image.photometric,
        "bits_stored": image.bits_stored,
        "rows": image.rows,
        "columns": image.columns,
        **box_fields(box),
    }


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, object]]) -> None:
    """Write ``rows`` with a header line (LF line endings, deterministic)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_answers(
    out: Path,
    truth_columns: tuple[str, ...],
    truth: list[dict[str, object]],
    junk: list[JunkFile],
    what: str,
) -> None:
    """Write ``ground_truth.csv`` and ``junk.csv``; both are listed in ``junk.csv`` too,
    since a scan of ``out`` finds them (so ground truth plus junk covers every file)."""
    junk = [
        *junk,
        JunkFile("ground_truth.csv", Reason.NOT_DICOM, f"ground truth of this {what}"),
        JunkFile("junk.csv", Reason.NOT_DICOM, "expected reasons of the non-image files"),
    ]
    write_csv(out / "ground_truth.csv", truth_columns, truth)
    write_csv(
        out / "junk.csv",
        JUNK_COLUMNS,
        [{"path": j.path, "reason": j.reason.value, "description": j.description} for j in junk],
    )


def check_empty(out: Path) -> None:
    """Create ``out``, or refuse it if it holds anything: synth writes a fresh tree."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder is not empty: {out} (synth writes a fresh tree)")
    out.mkdir(parents=True, exist_ok=True)


def generate_archive(
    out: Path, config: SynthConfig, progress: Progress | None = None, jobs: int = 1
) -> SynthSummary:
    """Write a synthetic DICOM archive under the empty (or new) folder ``out``.

    ``progress(done, total)`` is called after each image. Same ``config`` -> the
    same files, byte for byte, whatever the number of drawing processes ``jobs``.
    """
    check_empty(out)
    syntaxes, skipped = usable_syntaxes(config.syntaxes)
    studies = plan_archive(config, syntaxes)
    total = sum(len(s.images) for s in studies)
    fileset = FileSet()
    fileset.ID = "BATCHFRAC"
    fileset.UID = UID(uid(config.seed, "fileset"))
    truth: dict[str, dict[str, object]] = {}
    order: list[str] = []
    done = 0
    made = ordered_map(
        _make_instance, ((s, image, config.seed) for s in studies for image in s.images), jobs
    )
    for study in studies:
        on_cd = config.junk and study.patient.index % 3 == 0
        for image in study.images:
            ds, box = next(made)
            order.append(image.sop_instance_uid)
            if on_cd:
                fileset.add(ds)
                truth[image.sop_instance_uid] = _truth_row("", study, image, box)
            else:
                path = own_path(study, image)
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(out / path, enforce_file_format=True)
                truth[image.sop_instance_uid] = _truth_row(path, study, image, box)
            done += 1
            if progress is not None:
                progress(done, total)
    junk: list[JunkFile] = []
    if config.junk:
        fileset.write(out)
        for instance in fileset:
            relative = Path(instance.path).relative_to(out.resolve())
            truth[instance.SOPInstanceUID]["path"] = relative.as_posix()
        junk = _write_junk(out, config.seed, [truth[k] for k in order])
    rows = [truth[k] for k in order]
    write_answers(out, GROUND_TRUTH_COLUMNS, rows, junk, "archive")
    return SynthSummary(
        out=out,
        layout=Layout.DICOM,
        patients=len({s.patient.index for s in studies}),
        studies=len(studies),
        images=len(rows),
        abnormal_studies=sum(s.abnormality is not None for s in studies),
        junk_files=len(junk),
        by_syntax=dict(Counter(str(r["transfer_syntax"]) for r in rows)),
        skipped_syntaxes=tuple(s.value for s in skipped),
    )


def _write_junk(out: Path, seed: int, rows: list[dict[str, object]]) -> list[JunkFile]:
    """README, .DS_Store, AppleDouble, a truncated copy of an image; DICOMDIR is listed."""
    own = [str(r["path"]) for r in rows if not str(r["path"]).startswith("PT")]
    paths = own or [str(r["path"]) for r in rows]
    explicit = [str(r["path"]) for r in rows if r["transfer_syntax"] == str(Syntax.EXPLICIT.uid)]
    source = (explicit or paths)[0]
    folder = paths[0].rsplit("/", 1)[0]
    junk = write_clutter(out, folder if own else "")
    target = f"{source.rsplit('/', 1)[0]}/{uid(seed, 'truncated')}.dcm"
    junk.append(write_truncated(out, source, target))
    junk.append(JunkFile("DICOMDIR", Reason.DICOMDIR, "DICOM media directory of the PT* folders"))
    return junk
