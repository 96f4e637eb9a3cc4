"""What ``bundle.json`` records about a freshly trained head (the paper's tables 2 and 3).

:func:`head_meta` assembles it from named parts: the data and its split, the recipe as
run, where it ran, and the validation metrics of the restored best epoch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from .. import __version__
from ..datasets.samples import Dataset, Sample, class_counts
from ..defaults import DEFAULT_THRESHOLD
from ..enums import Head, Label
from ..evaluation.metrics import binary_metrics, multiclass_metrics, study_scores
from .loop import FitResult
from .plan import END_TO_END, ModelPlan

if TYPE_CHECKING:
    from .trainer import TrainConfig, TrainingSplit


def head_meta(
    config: TrainConfig,
    plan: ModelPlan,
    split: TrainingSplit,
    val_targets: np.ndarray,
    result: FitResult,
    rate: float,
) -> dict[str, Any]:
    """The head's ``bundle.json`` record (``write_head`` adds file, hashes and classes)."""
    metrics, extras = validation_metrics(
        config.head, split.validation, val_targets, result.val_probs
    )
    meta: dict[str, Any] = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software_version": __version__,
        "data": _data_summary(config, split.dataset),
        "images_per_class": class_counts(split.train, config.head),
        "validation_images_per_class": class_counts(split.validation, config.head),
        "patients": {
            "train": len({s.patient for s in split.train}),
            "validation": len({s.patient for s in split.validation}),
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
        "recipe": _recipe(config, plan, rate),
        "history": [dict(epoch) for epoch in result.history],
        **extras,
    }
    if config.head is not Head.ROUTER:
        meta["threshold"] = DEFAULT_THRESHOLD
    return meta


def _data_summary(config: TrainConfig, dataset: Dataset) -> dict[str, Any]:
    source = "MURA-v1.1" if dataset.kind.value == "mura" else "DICOM archive + labels CSV"
    return {
        "source": source,
        **dataset.describe(),
        "labels": str(config.labels) if config.labels else None,
        "split_rule": (
            f"by patient, stratified by class, {config.val_split:.0%} validation, "
            f"seed {config.seed}"
        ),
    }


def _recipe(config: TrainConfig, plan: ModelPlan, rate: float) -> dict[str, Any]:
    return {
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
    }


def validation_metrics(
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
