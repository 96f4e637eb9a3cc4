"""``batchfrac train``: the paper's transfer-learning recipe for one head of a bundle.

Recipe (Patel et al., see ``training/paper_recipe.json``): EfficientNet-B0, only the last
20 layers + classifier trainable, every BatchNormalization frozen, Adam 1e-4, categorical
cross-entropy, 20 % of the data held out for validation. batchfrac holds out whole
*patients* (stratified by class), and adds radiograph augmentation, balanced class
weights, early stopping and restores the weights of the best validation loss.

The shared trunk is frozen, so bone heads train on per-batch trunk features
(:class:`~batchfrac.train.loop.HeadSteps`), never on a full-model fit. How the trunk and
the head are obtained is decided in :mod:`batchfrac.train.plan`.

Nothing is written until training has finished: the head is then added (or replaced)
with :func:`~batchfrac.bundle.format.write_head`, atomically. A first training creates the
bundle in a hidden sibling folder and renames it into place, so Ctrl-C or an exception at
any moment leaves the bundle path exactly as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import keras
import numpy as np

from .. import __version__
from ..bundle.format import BUNDLE_FILE, ModelBundle, create_bundle, write_head
from ..datasets.archive import read_labeled_archive
from ..datasets.samples import (
    Dataset,
    DatasetError,
    Sample,
    class_counts,
    head_classes,
    head_targets,
    label_targets,
    read_mura,
    split_by_patient,
)
from ..defaults import DEFAULT_THRESHOLD
from ..enums import Head, Label
from ..errors import BundleError
from ..evaluation.metrics import binary_metrics, multiclass_metrics, study_scores
from ..ingest.preprocess import PreprocessSpec
from .augment import AugmentParams, RadiographAugment
from .auxiliary import JointSteps, build_auxiliary_model, joint_loss, joint_targets
from .batches import ImageBatches, ImageLoader, balanced_class_weight, ingest_fetcher
from .loop import FitResult, FullSteps, HeadSteps, TrainObserver, fit
from .plan import END_TO_END, ModelPlan, plan_models, trunk_sha256
from .recipe import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_IMAGE_SIZE,
    EARLY_STOPPING_PATIENCE,
    END_TO_END_LEARNING_RATE,
    LEARNING_RATE,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one ``batchfrac train`` run (defaults = the paper's recipe).

    ``weights`` is the raw ``--weights`` value (``imagenet``, ``none`` or a path; ``None``
    = not given). ``image_size``/``spec`` apply to a new bundle only (an existing bundle
    keeps its own). ``learning_rate`` ``None`` = 1e-4, or 1e-3 when training end to end.
    """

    head: Head
    data: Path
    bundle: Path
    weights: str | None = None
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    image_size: int | None = None
    val_split: float = 0.2
    seed: int = 0
    labels: Path | None = None
    demo: bool = False
    learning_rate: float | None = None
    patience: int = EARLY_STOPPING_PATIENCE
    augment: AugmentParams = field(default_factory=AugmentParams)
    spec: PreprocessSpec | None = None


@dataclass(frozen=True)
class TrainResult:
    """The outcome: the bundle's new id and the head's metadata as written."""

    head: Head
    bundle: Path
    bundle_id: str
    mode: str
    created_bundle: bool
    meta: dict[str, Any]


def load_labelled(data: Path, labels: Path | None, split: str, loader: ImageLoader) -> Dataset:
    """A MURA split (``labels`` None) or a labelled DICOM archive (decoded into ``loader``)."""
    if labels is None:
        return read_mura(data, split)
    return read_labeled_archive(data, labels, ingest_fetcher(loader.spec), keep=loader.remember)


def open_bundle(path: Path) -> ModelBundle | None:
    """The bundle at ``path``; ``None`` when nothing (or an empty folder) is there."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return None
    if not (path / BUNDLE_FILE).is_file():
        raise BundleError(f"{path} exists but is not a model bundle (no {BUNDLE_FILE})")
    return ModelBundle.load(path)


def _spec_for(config: TrainConfig, bundle: ModelBundle | None) -> PreprocessSpec:
    if bundle is not None:
        if config.image_size is not None and config.image_size != bundle.image_size:
            raise BundleError(
                f"bundle {bundle.path} works at image size {bundle.image_size}, not "
                f"{config.image_size}: leave out --image-size or use a new --bundle"
            )
        return bundle.spec
    if config.spec is not None:
        if config.image_size is not None and config.image_size != config.spec.image_size:
            raise BundleError("--image-size differs from the preprocess spec's image_size")
        return config.spec
    return PreprocessSpec(image_size=config.image_size or DEFAULT_IMAGE_SIZE)


def train(
    config: TrainConfig,
    observer: TrainObserver | None = None,
    announce: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``config.head`` and add it to ``config.bundle`` (see the module docstring).

    Raises :class:`DatasetError` / :class:`BundleError` for bad data or bundles, before
    any training when possible. ``announce`` receives a few lines meant for the user.
    """
    say = announce or logger.info
    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError("epochs and batch size must be at least 1")
    bundle = open_bundle(config.bundle)
    if bundle is not None and config.demo and not bundle.demo:
        say("--demo ignored: it marks a new bundle only, and this bundle exists")
    spec = _spec_for(config, bundle)
    loader = ImageLoader(spec, ingest_fetcher(spec) if config.labels is not None else None)
    dataset = load_labelled(config.data, config.labels, "train", loader).for_head(config.head)
    if not dataset.samples:
        raise DatasetError(f"no {config.head.value} images in {config.data}")
    train_set, val_set = split_by_patient(
        dataset.samples, config.head, config.val_split, config.seed
    )
    classes = head_classes(config.head)
    say(
        f"{config.head.value}: {len(train_set)} training / {len(val_set)} validation images "
        f"({len(dataset.samples)} in {dataset.root}, split by patient)"
    )
    keras.utils.set_random_seed(config.seed)
    plan = plan_models(config.head, len(classes), spec.image_size, config.weights, bundle)
    say(plan.describe())
    rate = config.learning_rate or (
        END_TO_END_LEARNING_RATE if plan.mode == END_TO_END else LEARNING_RATE
    )
    optimizer = keras.optimizers.Adam(learning_rate=rate)
    train_targets = head_targets(train_set, config.head)
    val_targets = head_targets(val_set, config.head)
    n_train_classes = len(classes)
    steps: FullSteps | HeadSteps
    if plan.full is not None and config.head is Head.ROUTER:
        # Defining the shared trunk: learn abnormality too (see models/auxiliary.py).
        n_aux = len(Label)
        joint = build_auxiliary_model(plan.trunk, plan.head, n_aux)
        joint.compile(optimizer=optimizer, loss=joint_loss(len(classes), n_aux))
        aux_targets = label_targets(train_set)
        steps = JointSteps(joint, len(classes), label_targets(val_set))
        train_targets = joint_targets(train_targets, aux_targets, n_aux)
        n_train_classes = len(classes) * n_aux
    else:
        trained = plan.full if plan.full is not None else plan.head
        trained.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
        steps = FullSteps(trained) if plan.full is not None else HeadSteps(plan.trunk, plan.head)
    weights = balanced_class_weight(train_targets, n_train_classes)
    train_batches = ImageBatches(
        train_set,
        train_targets,
        n_train_classes,
        loader,
        config.batch_size,
        augment=RadiographAugment(config.augment),
        class_weight=weights,
        shuffle=True,
        full_batches=True,
        seed=config.seed,
    )
    val_batches = ImageBatches(val_set, val_targets, len(classes), loader, config.batch_size)
    result = fit(
        steps,
        train_batches,
        val_batches,
        epochs=config.epochs,
        patience=config.patience,
        observer=observer,
    )
    meta = _head_meta(config, plan, dataset, train_set, val_set, val_targets, result, rate)
    if n_train_classes == len(classes):
        meta["class_weight"] = {classes[c]: w for c, w in weights.items()}
    else:
        meta["auxiliary_task"] = "normal/abnormal, all bones pooled (trunk defined end to end)"
    bundle_id = _save(config, plan, spec, meta, bundle is None)
    say(f"saved head {config.head.value} into {config.bundle} (bundle id {bundle_id})")
    return TrainResult(config.head, config.bundle, bundle_id, plan.mode, bundle is None, meta)


def _validation_metrics(
    head: Head, val_set: tuple[Sample, ...], targets: np.ndarray, probs: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Image-level validation metrics (flat numbers) and extras (router confusion)."""
    if head is Head.ROUTER:
        router = multiclass_metrics(targets, probs)
        flat = {k: v for k, v in router.as_dict().items() if k != "confusion"}
        return flat, {"validation_confusion": [list(row) for row in router.confusion]}
    abnormal = probs[:, Label.ABNORMAL.column]
    image = binary_metrics(targets, abnormal, DEFAULT_THRESHOLD).as_dict()
    studies = study_scores([s.study for s in val_set], targets, abnormal)
    study = binary_metrics(studies.y_true, studies.prob, DEFAULT_THRESHOLD)
    image.update({"study_accuracy": study.accuracy, "study_kappa": study.kappa})
    image["study_auroc"] = study.auroc
    return image, {}


def compute_description() -> dict[str, str]:
    """Where a head was trained: Keras backend and version, and the device it ran on.

    Float arithmetic differs between backends and devices (a GPU-trained head is not
    bit-identical to a CPU rebuild from the same data and seed), so it is recorded.
    """
    backend = keras.backend.backend()
    device = "cpu"
    if backend == "jax":
        import jax

        first = jax.devices()[0]
        device = f"{first.platform}: {first.device_kind}"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        device = f"gpu: {gpus[0].name}" if gpus else "cpu"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            device = f"gpu: {torch.cuda.get_device_name(0)}"
    return {"keras_backend": backend, "keras_version": keras.__version__, "device": device}


def _head_meta(
    config: TrainConfig,
    plan: ModelPlan,
    dataset: Dataset,
    train_set: tuple[Sample, ...],
    val_set: tuple[Sample, ...],
    val_targets: np.ndarray,
    result: FitResult,
    rate: float,
) -> dict[str, Any]:
    metrics, extras = _validation_metrics(config.head, val_set, val_targets, result.val_probs)
    source = "MURA-v1.1" if dataset.kind.value == "mura" else "DICOM archive + labels CSV"
    meta: dict[str, Any] = {
        "trunk_sha256": trunk_sha256(plan.trunk),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software_version": __version__,
        "data": {
            "source": source,
            **dataset.describe(),
            "labels": str(config.labels) if config.labels else None,
            "split_rule": (
                f"by patient, stratified by class, {config.val_split:.0%} validation, "
                f"seed {config.seed}"
            ),
        },
        "images_per_class": class_counts(train_set, config.head),
        "validation_images_per_class": class_counts(val_set, config.head),
        "patients": {
            "train": len({s.patient for s in train_set}),
            "validation": len({s.patient for s in val_set}),
        },
        "epochs": result.epochs_run,
        "epochs_requested": config.epochs,
        "best_epoch": result.best_epoch + 1,
        "stopped_early": result.stopped_early,
        "training_seconds": round(result.seconds, 3),
        "compute": compute_description(),
        "validation_metrics": metrics,
        "seed": config.seed,
        "mode": plan.mode,
        "head_init": plan.head_init,
        "recipe": {
            "optimizer": "adam",
            "learning_rate": rate,
            "loss": "categorical_crossentropy",
            "batch_size": config.batch_size,
            "trainable": (
                "whole network (defines the trunk)"
                if plan.mode == END_TO_END
                else "last 20 B0 layers + classifier, BatchNormalization frozen"
            ),
            "validation_split": config.val_split,
            "early_stopping_patience": config.patience,
            "checkpoint": "best validation loss restored",
            "class_weight": "balanced",
            "augmentation": config.augment.as_dict(),
        },
        "history": [dict(epoch) for epoch in result.history],
        **extras,
    }
    if config.head is not Head.ROUTER:
        meta["threshold"] = DEFAULT_THRESHOLD
    return meta


def _save(
    config: TrainConfig, plan: ModelPlan, spec: PreprocessSpec, meta: dict[str, Any], new: bool
) -> str:
    """Write the head (and, for a new bundle, the trunk) atomically; return the bundle id."""
    if not new:
        write_head(config.bundle, config.head, plan.head, meta)
        return ModelBundle.load(config.bundle).bundle_id
    assert plan.new_bundle is not None
    target = Path(config.bundle)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.train-", dir=target.parent))
    try:
        built = staging / "bundle"
        create_bundle(
            built,
            plan.trunk,
            spec=spec,
            weights_origin=plan.new_bundle["weights_origin"],
            demo=config.demo,
            trunk_obtained=plan.new_bundle["trunk_obtained"],
        )
        write_head(built, config.head, plan.head, meta)
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if target.exists():
            raise BundleError(f"{target} appeared while training; the new bundle was not saved")
        os.replace(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ModelBundle.load(target).bundle_id
