"""EfficientNet-B0 split into a shared frozen *trunk* and small per-task *heads*.

The paper fine-tunes only the last 20 layers of an ImageNet EfficientNet-B0 (every
BatchNormalization frozen, even there) plus a new classifier. So the first 218 layers
are identical in the router and the seven bone models: batchfrac computes them once
(the trunk) and stores one head per task::

    image (S,S,3) in [0,1] -> x255 -> B0 stem ... block6d_se_excite  ─┐ trunk
                                        ... block6c_add ──────────────┤ (2 outputs)
    block6d_project_conv ... top_activation -> GAP -> Dropout(0.2) -> Dense(softmax)  head

``block6d_add`` adds block6d's branch to ``block6c_add``'s output, which is why the
trunk hands the head two tensors. Keras' ImageNet build inserts one extra
``Rescaling(1/sqrt(stddev))`` after the ``Normalization`` layer but a build from a
weights *path* does not; :func:`build_backbone` always builds the path structure and
folds that factor into the normalisation variance (``var' = var * stddev``), so
``imagenet`` and ``PATH`` give the same network and the same outputs.

The split points are named in :mod:`.layout` (shared with the ONNX graphs).
Only ``keras.*`` APIs are used (no ``tf.*``), so ``KERAS_BACKEND=jax`` works too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from ..errors import BundleError
from .layout import HEAD_INPUT_NAMES, TRUNK_OUTPUT_LAYERS
from .weights import IMAGENET_MEAN_RGB, IMAGENET_STDDEV_RGB, resolve_weights

# The last 20 layers of Keras' EfficientNet-B0 (include_top=False): the paper's
# trainable part, and the B0 part of every head.
HEAD_LAYER_NAMES = (
    "block6d_project_conv",
    "block6d_project_bn",
    "block6d_drop",
    "block6d_add",
    "block7a_expand_conv",
    "block7a_expand_bn",
    "block7a_expand_activation",
    "block7a_dwconv",
    "block7a_bn",
    "block7a_activation",
    "block7a_se_squeeze",
    "block7a_se_reshape",
    "block7a_se_reduce",
    "block7a_se_expand",
    "block7a_se_excite",
    "block7a_project_conv",
    "block7a_project_bn",
    "top_conv",
    "top_bn",
    "top_activation",
)
CLASSIFIER_LAYER_NAMES = ("avg_pool", "top_dropout", "predictions")
CLASSIFIER_DROPOUT = 0.2

# Layers of the trunk: input, x255, and B0's first 216 layers. With Keras' ImageNet
# structure (which has the extra Rescaling) HEAD_FIRST_LAYER is layer 218 as well.
N_TRUNK_LAYERS = 218

# Keras names the stem's Rescaling/Normalization layers automatically ("rescaling_7"
# in a process that built B0 before); fixed names keep the weight-file keys stable.
STEM_RESCALING = "stem_rescaling"
STEM_NORMALIZATION = "stem_normalization"


def build_backbone(weights: str | Path | None, image_size: int) -> keras.Model:
    """Build the full EfficientNet-B0 without its top, ready for :func:`split_backbone`.

    ``weights`` is ``"imagenet"`` (Keras download, cached in ``$KERAS_HOME/models``),
    a :class:`Path` to a local ``efficientnetb0_notop.h5``, or ``None`` (random
    initialisation; the input normalisation is then ImageNet's mean and stddev).
    The model takes float32 ``(image_size, image_size, 3)`` images in ``[0, 1]`` (the
    preprocess output) and scales them to B0's expected 0-255 range itself.
    Raises :class:`BundleError` when the weights file does not fit B0.
    """
    source = resolve_weights(weights)
    shape = (image_size, image_size, 3)
    image = keras.Input(shape=shape, dtype="float32", name="image")
    scaled = keras.layers.Rescaling(255.0, name="to_0_255")(image)
    model = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_tensor=scaled, input_shape=shape
    )
    normalization = _rename_stem(model)
    stddev = np.asarray(IMAGENET_STDDEV_RGB, dtype="float32")
    if source.path is None:
        normalization.adapt_mean.assign(np.asarray(IMAGENET_MEAN_RGB, dtype="float32"))
        normalization.adapt_variance.assign(stddev**2)
    else:
        try:
            model.load_weights(str(source.path))
        except (ValueError, KeyError, OSError) as exc:
            raise BundleError(
                f"{source.path} is not an EfficientNet-B0 notop weights file: {exc}"
            ) from exc
        # Fold Keras' ImageNet-only Rescaling(1/sqrt(stddev)) into the variance.
        variance = keras.ops.convert_to_numpy(normalization.adapt_variance)
        normalization.adapt_variance.assign(variance * stddev)
    normalization.finalize_state()
    return model


def _rename_stem(model: keras.Model) -> keras.layers.Normalization:
    stem = model.layers[2:4]
    if not (
        isinstance(stem[0], keras.layers.Rescaling)
        and isinstance(stem[1], keras.layers.Normalization)
    ):
        raise RuntimeError(f"unexpected EfficientNet-B0 stem in this Keras: {stem}")
    stem[0].name = STEM_RESCALING
    stem[1].name = STEM_NORMALIZATION
    return stem[1]


def split_backbone(backbone: keras.Model) -> tuple[keras.Model, keras.Model]:
    """Split a :func:`build_backbone` model into ``(trunk, head_body)``.

    Both share the backbone's layers (and weights). The trunk maps the image to the
    outputs of :data:`TRUNK_OUTPUT_LAYERS`; ``head_body`` maps those two tensors
    through the last 20 B0 layers to ``top_activation``.
    """
    outputs = [backbone.get_layer(name).output for name in TRUNK_OUTPUT_LAYERS]
    trunk = keras.Model(backbone.inputs[0], outputs, name="trunk")
    head_body = keras.Model(outputs, backbone.outputs, name="head_body")
    return trunk, head_body


def build_head(head_body_or_backbone: keras.Model, n_classes: int, name: str) -> keras.Model:
    """A new head: a copy of the last 20 B0 layers (own weights) plus the classifier.

    The source is a head body, a backbone, or another head (e.g. the router trained
    end to end, when no ImageNet weights exist). The copy starts from its weights
    (ImageNet's, for transfer learning); its inputs are the trunk's two outputs; its
    output is the softmax over ``n_classes``. Layer names follow Keras' B0.
    """
    if n_classes < 2:
        raise ValueError(f"a head needs at least 2 classes, got {n_classes}")
    source = head_body_or_backbone
    if _has_layer(source, "stem_conv"):
        source = split_backbone(source)[1]
    elif _has_layer(source, "predictions"):
        source = keras.Model(source.inputs, source.get_layer(HEAD_LAYER_NAMES[-1]).output)
    inputs = [
        keras.Input(shape=tensor.shape[1:], dtype="float32", name=input_name)
        for tensor, input_name in zip(source.inputs, HEAD_INPUT_NAMES, strict=True)
    ]
    body = keras.models.clone_model(source, input_tensors=inputs)
    for layer in source.layers:
        if layer.weights:
            body.get_layer(layer.name).set_weights(layer.get_weights())
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(body.outputs[0])
    x = keras.layers.Dropout(CLASSIFIER_DROPOUT, name="top_dropout")(x)
    probs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, probs, name=name)


def build_full_model(trunk: keras.Model, head: keras.Model) -> keras.Model:
    """One standalone image -> probabilities model: ``head(trunk(image))``.

    The trunk and the head are nested and *shared*: training the result (e.g. the
    router end to end) trains ``trunk`` and ``head`` in place.
    """
    image = keras.Input(shape=trunk.inputs[0].shape[1:], dtype="float32", name="image")
    probs = head(trunk(image))
    return keras.Model(image, probs, name=f"{head.name}_b0")


def freeze_for_transfer(model: keras.Model) -> None:
    """Apply the paper's recipe to a full model, a backbone or a head, in place.

    Only the last 20 B0 layers (:data:`HEAD_LAYER_NAMES`) and the classifier stay
    trainable; every ``BatchNormalization`` is frozen, including those in the last 20
    (a frozen BN layer also runs in inference mode). Recompile after calling this.
    """
    model.trainable = True
    trainable_found = False
    for layer in iter_leaf_layers(model):
        wanted = layer.name in HEAD_LAYER_NAMES or layer.name in CLASSIFIER_LAYER_NAMES
        layer.trainable = wanted and not isinstance(layer, keras.layers.BatchNormalization)
        trainable_found = trainable_found or wanted
    if not trainable_found:
        raise ValueError(f"{model.name} has none of the last 20 EfficientNet-B0 layers")
    for container in _iter_containers(model):
        if not any(layer.trainable for layer in iter_leaf_layers(container)):
            container.trainable = False


def iter_leaf_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every non-model layer of ``model``, descending into nested models, in order."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_leaf_layers(layer)
        else:
            yield layer


def _iter_containers(model: keras.Model) -> Iterator[keras.Model]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _iter_containers(layer)
            yield layer


def _has_layer(model: keras.Model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)
