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
with :func:`~batchfrac.bundle.write.write_head`, atomically. A first training creates the
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
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ..bundle.format import BUNDLE_FILE, ModelBundle
from ..bundle.write import create_bundle, write_head
from ..datasets.loader import ImageLoader, ingest_fetcher, load_labelled
from ..datasets.samples import (
    Dataset,
    DatasetError,
    Sample,
    head_targets,
    label_targets,
    split_by_patient,
)
from ..enums import Head, Label
from ..errors import BundleError
from ..ingest.preprocess import PreprocessSpec
from .augment import AugmentParams, RadiographAugment
from .auxiliary import JointSteps, build_auxiliary_model, joint_loss, joint_targets
from .batches import ImageBatches, balanced_class_weight
from .head_meta import head_meta
from .loop import FullSteps, HeadSteps, TrainObserver, fit
from .plan import END_TO_END, ModelPlan, plan_models
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


@dataclass(frozen=True)
class TrainingSplit:
    """The labelled images of the head, split by patient."""

    dataset: Dataset
    train: tuple[Sample, ...]
    validation: tuple[Sample, ...]


@dataclass(frozen=True)
class TrainingTask:
    """What the loop optimises: its steps and targets. ``n_classes`` is the number of
    classes the training loss sees (bones x labels while the router defines the trunk)."""

    steps: FullSteps | HeadSteps
    train_targets: np.ndarray
    val_targets: np.ndarray
    n_classes: int


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
    split = _split(config, loader, say)
    keras.utils.set_random_seed(config.seed)
    plan = plan_models(config.head, len(config.head.classes), spec.image_size, config.weights,
                       bundle)  # fmt: skip
    say(plan.describe())
    rate = config.learning_rate or (
        END_TO_END_LEARNING_RATE if plan.mode == END_TO_END else LEARNING_RATE
    )
    task = _task(config, plan, split, rate)
    weights = balanced_class_weight(task.train_targets, task.n_classes)
    result = fit(
        task.steps,
        *_batches(config, split, task, loader, weights),
        epochs=config.epochs,
        patience=config.patience,
        observer=observer,
    )
    meta = head_meta(config, plan, split, task.val_targets, result, rate)
    classes = config.head.classes
    if task.n_classes == len(classes):
        meta["class_weight"] = {classes[c]: w for c, w in weights.items()}
    else:
        meta["auxiliary_task"] = "normal/abnormal, all bones pooled (trunk defined end to end)"
    bundle_id = _save(config, plan, spec, meta, bundle)
    say(f"saved head {config.head.value} into {config.bundle} (bundle id {bundle_id})")
    return TrainResult(config.head, config.bundle, bundle_id, plan.mode, bundle is None, meta)


def _split(config: TrainConfig, loader: ImageLoader, say: Callable[[str], None]) -> TrainingSplit:
    """The head's labelled images, split by patient (fails before any network is built)."""
    dataset = load_labelled(config.data, config.labels, "train", loader).for_head(config.head)
    if not dataset.samples:
        raise DatasetError(f"no {config.head.value} images in {config.data}")
    train_set, val_set = split_by_patient(
        dataset.samples, config.head, config.val_split, config.seed
    )
    say(
        f"{config.head.value}: {len(train_set)} training / {len(val_set)} validation images "
        f"({len(dataset.samples)} in {dataset.root}, split by patient)"
    )
    return TrainingSplit(dataset, train_set, val_set)


def _task(config: TrainConfig, plan: ModelPlan, split: TrainingSplit, rate: float) -> TrainingTask:
    """Compile what trains: the head on trunk features, the whole network, or (when the
    router defines the shared trunk) the network with the auxiliary abnormality task."""
    optimizer = keras.optimizers.Adam(learning_rate=rate)
    n_classes = len(config.head.classes)
    train_targets = head_targets(split.train, config.head)
    val_targets = head_targets(split.validation, config.head)
    if plan.full is not None and config.head is Head.ROUTER:
        # Defining the shared trunk: learn abnormality too (see train/auxiliary.py).
        n_aux = len(Label)
        joint = build_auxiliary_model(plan.trunk, plan.head, n_aux)
        joint.compile(optimizer=optimizer, loss=joint_loss(n_classes, n_aux))
        steps: FullSteps | HeadSteps = JointSteps(joint, n_classes, label_targets(split.validation))
        joint_train = joint_targets(train_targets, label_targets(split.train), n_aux)
        return TrainingTask(steps, joint_train, val_targets, n_classes * n_aux)
    trained = plan.full if plan.full is not None else plan.head
    trained.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    steps = FullSteps(trained) if plan.full is not None else HeadSteps(plan.trunk, plan.head)
    return TrainingTask(steps, train_targets, val_targets, n_classes)


def _batches(
    config: TrainConfig,
    split: TrainingSplit,
    task: TrainingTask,
    loader: ImageLoader,
    weights: dict[int, float],
) -> tuple[ImageBatches, ImageBatches]:
    """Augmented, class-weighted, shuffled training batches and plain validation batches."""
    train_batches = ImageBatches(
        split.train,
        task.train_targets,
        task.n_classes,
        loader,
        config.batch_size,
        augment=RadiographAugment(config.augment),
        class_weight=weights,
        shuffle=True,
        full_batches=True,
        seed=config.seed,
    )
    val_batches = ImageBatches(
        split.validation, task.val_targets, len(config.head.classes), loader, config.batch_size
    )
    return train_batches, val_batches


def _save(
    config: TrainConfig,
    plan: ModelPlan,
    spec: PreprocessSpec,
    meta: dict[str, Any],
    bundle: ModelBundle | None,
) -> str:
    """Write the head (and, for a new bundle, the trunk) atomically; return the bundle id.

    The trunk's sha256 is the loaded bundle's, or the one the new bundle's trunk file got.
    """
    if bundle is not None:
        record = {**meta, "trunk_sha256": bundle.trunk_sha256}
        return write_head(config.bundle, config.head, plan.head, record)
    assert plan.new_bundle is not None
    target = Path(config.bundle)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.train-", dir=target.parent))
    try:
        built = staging / "bundle"
        trunk_sha = create_bundle(
            built,
            plan.trunk,
            spec=spec,
            weights_origin=plan.new_bundle["weights_origin"],
            demo=config.demo,
            trunk_obtained=plan.new_bundle["trunk_obtained"],
        )
        bundle_id = write_head(built, config.head, plan.head, {**meta, "trunk_sha256": trunk_sha})
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if target.exists():
            raise BundleError(f"{target} appeared while training; the new bundle was not saved")
        os.replace(built, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return bundle_id
