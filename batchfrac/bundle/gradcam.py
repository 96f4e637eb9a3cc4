"""Grad-CAM (Selvaraju et al. 2017) of a head's class on its last convolutional block.

For trunk features of a batch and one head: ``A`` = the output of ``top_activation``
(7 x 7 x 1280 at 224 px), ``g`` = the gradient of the class score with respect to ``A``,
channel weights ``alpha_k`` = the spatial mean of ``g_k``, map = ReLU(sum_k alpha_k A_k),
scaled to [0, 1] per image. The trunk is frozen and is not differentiated: the head's
body runs forward once, and one backward pass from the scores to ``A`` (through the
real ``avg_pool`` layer and the ``predictions`` kernel) serves the whole batch.

Gradients come from the Keras backend in use: TensorFlow's ``GradientTape`` or
``jax.grad`` (Keras itself has no backend-neutral gradient API; the PyTorch backend is
refused until its autograd branch can be tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from ..enums import CamScore as Score
from ..enums import Label
from .network import CLASSIFIER_LAYER_NAMES, HEAD_LAYER_NAMES

#: The layer whose output Grad-CAM weighs: the head's last convolutional block.
CAM_LAYER = HEAD_LAYER_NAMES[-1]
ABNORMAL = Label.ABNORMAL.column


def _check_head(head: keras.Model) -> tuple[keras.layers.Layer, keras.layers.Dense]:
    names = [layer.name for layer in head.layers]
    if CAM_LAYER not in names or names[-len(CLASSIFIER_LAYER_NAMES) :] != list(
        CLASSIFIER_LAYER_NAMES
    ):
        raise ValueError(
            f"head {head.name} is not {CAM_LAYER} -> {' -> '.join(CLASSIFIER_LAYER_NAMES)}"
        )
    pool, dense = head.get_layer(CLASSIFIER_LAYER_NAMES[0]), head.get_layer("predictions")
    if not isinstance(dense, keras.layers.Dense) or dense.activation is not (
        keras.activations.softmax
    ):
        raise ValueError(f"head {head.name}: predictions must be a softmax Dense layer")
    return pool, dense


def _score_function(head: keras.Model, class_index: int, score: Score) -> Callable[[Any], Any]:
    """``A`` -> per-image score, through the head's own pooling and Dense weights (the
    dropout between them is the identity at inference)."""
    pool, dense = _check_head(head)
    n_classes = int(dense.units)
    if not 0 <= class_index < n_classes:
        raise ValueError(f"class index {class_index} out of range for {n_classes} classes")
    others = [j for j in range(n_classes) if j != class_index]
    ops = keras.ops

    def fn(activation: Any) -> Any:
        logits = ops.add(ops.matmul(pool(activation), dense.kernel), dense.bias)
        if score is Score.LOGIT:
            return logits[:, class_index]
        if score is Score.PROBABILITY:
            return ops.softmax(logits, axis=-1)[:, class_index]
        rest = ops.take(logits, others, axis=1)
        return logits[:, class_index] - ops.logsumexp(rest, axis=1)

    return fn


def _gradient(fn: Callable[[Any], Any], activation: np.ndarray) -> np.ndarray:
    """d sum(fn(A)) / dA with the backend's autodiff: per image, as images are independent."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        a = tf.convert_to_tensor(activation)
        with tf.GradientTape() as tape:
            tape.watch(a)
            total = tf.reduce_sum(fn(a))
        grad: Any = tape.gradient(total, a)
    elif backend == "jax":
        import jax

        grad = jax.grad(lambda a: jax.numpy.sum(fn(a)))(jax.numpy.asarray(activation))
    else:  # torch needs its autograd here: not written, as it could not be tested
        raise NotImplementedError(
            f"Grad-CAM supports the tensorflow and jax backends, not {backend}"
        )
    return np.asarray(keras.ops.convert_to_numpy(grad), dtype=np.float32)


def cam_from_gradients(activation: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """Grad-CAM maps (N, h, w) from ``A`` and ``dscore/dA`` (both (N, h, w, K)): ReLU of
    the activation weighted by the spatial mean of its gradient, each map divided by its
    maximum (an all-zero map stays zero)."""
    weights = gradient.astype(np.float64).mean(axis=(1, 2))
    cam = np.einsum("nhwk,nk->nhw", activation.astype(np.float64), weights)
    cam = np.maximum(cam, 0.0)
    peak = cam.max(axis=(1, 2), keepdims=True)
    out = np.zeros_like(cam)
    np.divide(cam, peak, out=out, where=peak > 0.0)
    return out.astype(np.float32)


def cam_activation(head: keras.Model, features: Sequence[np.ndarray]) -> np.ndarray:
    """The head's ``top_activation`` output (N, h, w, K) on trunk ``features``."""
    body = keras.Model(head.inputs, head.get_layer(CAM_LAYER).output)
    arrays = [np.asarray(f, dtype=np.float32) for f in features]
    return np.asarray(body.predict_on_batch(arrays), dtype=np.float32)


def gradcam(
    head: keras.Model,
    features: Sequence[np.ndarray],
    class_index: int = ABNORMAL,
    score: Score | str = Score.LOG_ODDS,
) -> np.ndarray:
    """Grad-CAM maps, float32 (N, h, w) in [0, 1], of class ``class_index`` of ``head``.

    ``features`` are the trunk outputs of N images (as :meth:`BundleRuntime.features`
    gives them); ``score`` what is differentiated (see :class:`Score`). The map has the
    resolution of ``top_activation`` (7 x 7 for 224 px inputs); see
    :mod:`batchfrac.report.heatmap` to bring it back to image pixels.
    """
    fn = _score_function(head, class_index, Score(score))
    if len(features[0]) == 0:
        shape = head.get_layer(CAM_LAYER).output.shape[1:3]
        return np.zeros((0, *shape), np.float32)
    activation = cam_activation(head, features)
    return cam_from_gradients(activation, _gradient(fn, activation))
