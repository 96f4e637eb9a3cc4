"""Test doubles for the scan tests: a tiny fake model bundle, ingest results, and a tiny
real bundle (image size 64, random trunk) cached between test sessions."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from batchfrac.bundle.device import BackendInfo
from batchfrac.enums import Backend, Bone, Head, Reason, Status
from batchfrac.ingest.preprocess import PreprocessSpec
from batchfrac.records import FileStat, ImageResult
from tests.factories import make_header

BONES = list(Bone)


class FakeBundle:
    """A bundle whose 'network' is arithmetic on the image mean, so results are predictable.

    The router picks bone ``floor(mean * 7)`` with confidence 0.9 (0.3 spread
    evenly when the mean's second decimal is 5); bone ``b``'s head says
    P(abnormal) = (index(b) + 1) / 10 + 0.05 * mean.
    """

    bundle_id = "fakebundle000001"
    demo = True
    notice = "FAKE demo bundle"
    trunk_sha256 = "0" * 64
    path = Path("/nonexistent/fake-bundle")
    fixed_batch = True
    backend = BackendInfo(name="fake", device="cpu", providers=(), batch_size=32, fixed_batch=True)
    gradcam_method = "fake"

    def __init__(self, image_size: int = 32, thresholds: dict[Bone, float] | None = None) -> None:
        self.image_size = image_size
        self.spec = PreprocessSpec(image_size=image_size)
        self.router_classes = [b.value for b in BONES]
        self.trunk_batches: list[int] = []
        self.head_seen: dict[Head, list[float]] = {}
        self.head_calls: Counter[Head] = Counter()
        self._thresholds = thresholds or {}

    def heads(self) -> list[str]:
        return [h.value for h in Head]

    def use_backend(self, backend: Backend, *, threads: int | None = None) -> BackendInfo:
        self.backend_requested = (Backend(backend), threads)
        return self.backend

    def threshold(self, bone: Bone) -> float:
        return self._thresholds.get(Bone(bone), 0.5)

    def weights_sha256(self) -> dict[str, str]:
        return {"trunk.npz": self.trunk_sha256}

    def trunk_features(self, x: np.ndarray) -> list[np.ndarray]:
        assert x.dtype == np.float32 and x.shape[1:] == (self.image_size, self.image_size, 3)
        self.trunk_batches.append(len(x))
        means = x.mean(axis=(1, 2, 3))
        return [means[:, None], np.stack([means, means], axis=1)]

    def head_probs(self, name: Head, features: list[np.ndarray]) -> np.ndarray:
        head = Head(name)
        means = features[0][:, 0].astype(np.float64)
        self.head_calls[head] += 1
        self.head_seen.setdefault(head, []).extend(means.tolist())
        if head is Head.ROUTER:
            return router_probs(means)
        p = (BONES.index(Bone(head.value)) + 1) / 10 + 0.05 * means
        return np.stack([1 - p, p], axis=1)

    def head_probs_and_cams(
        self, name: Head, features: list[np.ndarray]
    ) -> tuple[np.ndarray, None]:
        """As Keras: no map from the inference pass (:meth:`gradcam` draws them later)."""
        return self.head_probs(name, features), None

    def gradcam(self, name: Head, features: list[np.ndarray]) -> np.ndarray:
        """A 2 x 2 map hot in its top-right cell, for every image."""
        cams = np.zeros((len(features[0]), 2, 2), np.float32)
        cams[:, 0, 1] = 1.0
        return cams


def router_probs(means: np.ndarray) -> np.ndarray:
    """The FakeBundle router output for images of these means."""
    out = np.full((len(means), 7), 0.1 / 6)
    best = np.clip((means * 7).astype(int), 0, 6)
    out[np.arange(len(means)), best] = 0.9
    return out


def image_of_mean(mean: float, size: int = 32) -> np.ndarray:
    """An (S, S, 3) float32 image whose mean is ``mean``."""
    return np.full((size, size, 3), mean, np.float32)


def ok_result(
    path: str, mean: float, *, size: int = 32, frame: int = 0, **tags: object
) -> ImageResult:
    """An ok ImageResult whose pixels have the given mean."""
    stat = FileStat(path, 100 + len(path), 1_700_000_000_000_000_000)
    return ImageResult(
        stat, Status.OK, None, make_header(**tags), frame=frame, decode_ms=1.5,
        pixels=image_of_mean(mean, size),
    )  # fmt: skip


def rejected_result(path: str, reason: Reason, **tags: object) -> ImageResult:
    """A skipped/error ImageResult (with a header when tags are given)."""
    stat = FileStat(path, 10, 1_700_000_000_000_000_000)
    return ImageResult(
        stat,
        reason.status,
        reason,
        make_header(**tags) if tags else None,
        detail=f"{reason.value}!",
    )


def text_ingest(paths: list[str], config: object) -> list[ImageResult]:
    """An ingest stand-in: a file holding a float is an ok image of that mean, 'bad' an error,
    anything else not_dicom; ``frames:a,b`` gives a two-frame file."""
    out: list[ImageResult] = []
    for path in paths:
        st = os.stat(path)
        stat = FileStat(path, st.st_size, st.st_mtime_ns)
        text = Path(path).read_text(errors="replace").strip()
        study = Path(path).parent.name
        values = text[len("frames:") :].split(",") if text.startswith("frames:") else [text]
        try:
            means = [float(v) for v in values]
        except ValueError:
            reason = Reason.DECODE_ERROR if text == "bad" else Reason.NOT_DICOM
            hdr = make_header(study_instance_uid=study) if text == "bad" else None
            out.append(ImageResult(stat, reason.status, reason, hdr, detail=text[:20]))
            continue
        for frame, mean in enumerate(means):
            out.append(
                ImageResult(
                    stat, Status.OK, None,
                    make_header(study_instance_uid=study, sop_instance_uid=path),
                    frame=frame, pixels=image_of_mean(mean),
                )
            )  # fmt: skip
    return out


def build_tiny_bundle(path: Path, size: int = 64) -> Path:
    """A real bundle at image size ``size`` (64): scrambled B0 trunk, router and seven bone heads.

    Weights are scrambled and calibrated (tests/b0_helpers.py) so outputs
    depend on the image, as a trained network's do.
    """
    from batchfrac.bundle.format import ModelBundle
    from batchfrac.bundle.network import (
        build_backbone,
        build_full_model,
        build_head,
        split_backbone,
    )
    from batchfrac.bundle.write import create_bundle, write_head
    from tests.b0_helpers import (
        calibrate_batchnorm,
        calibrate_classifier,
        images,
        scramble_weights,
    )

    backbone = build_backbone(None, size)
    scramble_weights(backbone, seed=1)
    trunk, head_body = split_backbone(backbone)
    heads = {}
    for seed, head in enumerate(Head):
        model = build_head(head_body, 7 if head is Head.ROUTER else 2, head.value)
        scramble_weights(model, seed=10 + seed)
        # (this also recalibrates the shared trunk: the bundle is written afterwards)
        calibrate_batchnorm(build_full_model(trunk, model), images(16, size, seed=20 + seed))
        calibrate_classifier(
            model, trunk.predict_on_batch(images(8, size, seed=30 + seed)), seed=seed
        )
        heads[head] = model
    create_bundle(
        path, trunk, spec=PreprocessSpec(image_size=size), weights_origin={"kind": "none"}
    )
    trunk_sha = ModelBundle.load(path).trunk_sha256
    for head, model in heads.items():
        write_head(path, head, model, {"trunk_sha256": trunk_sha})
    return path


def crashing_ingest(paths: list[str], config: object) -> list[ImageResult]:
    """text_ingest, except that a file holding ``crash`` kills the process (a codec segfault)."""
    if any(Path(p).read_text(errors="replace").strip() == "crash" for p in paths):
        os._exit(1)
    return text_ingest(paths, config)


def hanging_ingest(paths: list[str], config: object) -> list[ImageResult]:
    """text_ingest, except that a file holding ``hang`` never returns (a stuck codec)."""
    if any(Path(p).read_text(errors="replace").strip() == "hang" for p in paths):
        time.sleep(3600)
    return text_ingest(paths, config)


class FakePanic(BaseException):
    """Like pyo3's ``PanicException``: a ``BaseException``, not an ``Exception``."""


def failing_ingest(paths: list[str], config: object) -> list[ImageResult]:
    """text_ingest, except that ``panic`` raises a BaseException (a Rust codec's panic),
    ``raise`` a ValueError, and ``freeze`` stops the worker process (SIGSTOP): it neither
    answers nor dies."""
    texts = {Path(p).read_text(errors="replace").strip() for p in paths}
    if "panic" in texts:
        raise FakePanic("index out of bounds: the len is 36864 but the index is 36864")
    if "raise" in texts:
        raise ValueError("a library bug")
    if "freeze" in texts:
        os.kill(os.getpid(), signal.SIGSTOP)
    return text_ingest(paths, config)


HOSTILE_NAME = 'we,ird "name"\n=1+1.dcm'


def make_dicom_archive(root: Path) -> dict[str, str]:
    """A tiny archive of real files; returns relative path -> expected status."""
    from pydicom.uid import RLELossless

    from tests.factories import gradient_image, make_image_dataset, write_dataset

    image = gradient_image(64, 48, 12)
    study = "1.2.826.0.1.3680043.8.498.1"
    expected = {}

    def dicom(rel: str, status: str, syntax: str | None = None, **tags: object) -> Path:
        tags.setdefault("StudyInstanceUID", study)
        tags.setdefault("BodyPartExamined", "HAND")
        path = write_dataset(make_image_dataset(image, **tags), root / rel, syntax)
        expected[rel] = status
        return path

    dicom("s1/hand1.dcm", "ok")
    dicom("s1/hand2.dcm", "ok", RLELossless)
    dicom(f"s1/{HOSTILE_NAME}", "ok", modality="CR")
    dicom(
        "s2/elbow.dcm",
        "ok",
        StudyInstanceUID="1.2.826.0.1.3680043.8.498.2",
        BodyPartExamined="ELBOW",
    )
    dicom("s2/ct.dcm", "skipped", modality="CT")
    cut = dicom("s2/truncated.dcm", "error")
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) - 2000])
    (root / "notes.txt").write_text("not a radiograph")
    expected["notes.txt"] = "skipped"
    return expected


def cached_tiny_bundle(cache_dir: Path) -> Path:
    """The tiny real bundle under ``cache_dir`` (pytest's cache), built when absent or stale."""
    import shutil

    from batchfrac.bundle.format import ModelBundle
    from batchfrac.errors import BundleError

    path = cache_dir / "bundle"
    try:
        bundle = ModelBundle.load(path)
        if "onnx" not in bundle.meta:
            raise BundleError("cached before bundles carried ONNX graphs")
        bundle.trunk_features(np.zeros((1, 64, 64, 3), np.float32))
    except BundleError:
        shutil.rmtree(path, ignore_errors=True)
        build_tiny_bundle(path)
    return path


def environ_ingest(paths: list[str], config: object) -> list[ImageResult]:
    """One ``skipped`` row per path whose detail is the environment the worker process
    started with (``/proc/self/environ``: what glibc's malloc and numpy read at start;
    a forked worker has its fork server's)."""
    start = dict(
        item.split(b"=", 1) for item in Path("/proc/self/environ").read_bytes().split(b"\0") if item
    )
    detail = ",".join(
        f"{key}={start.get(key.encode(), b'').decode()}"
        for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")
    )
    return [
        ImageResult(FileStat(p, 0, 0), Status.SKIPPED, Reason.NOT_DICOM, None, detail=detail)
        for p in paths
    ]


def process_ingest(paths: list[str], config: object) -> list[ImageResult]:
    """One ``skipped`` row per path whose detail is the worker's parent process's command
    line and whether SIGINT is ignored in the worker."""
    import psutil

    parent = " ".join(psutil.Process(os.getppid()).cmdline())
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    return [
        ImageResult(
            FileStat(p, 0, 0),
            Status.SKIPPED,
            Reason.NOT_DICOM,
            None,
            detail=f"sigint_ignored={ignored} parent={parent}",
        )  # fmt: skip
        for p in paths
    ]


class CountingIngest:
    """text_ingest that records the files it was given and can 'die' after N chunks."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.paths: list[str] = []
        self.interrupt_after = interrupt_after

    def __call__(self, paths: Sequence[str], config: object) -> list[ImageResult]:
        if self.interrupt_after is not None and len(self.paths) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.paths.extend(paths)
        return text_ingest(list(paths), config)
