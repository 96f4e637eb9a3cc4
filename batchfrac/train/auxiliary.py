"""Auxiliary abnormality task while the router defines the shared trunk from random weights.

Without ImageNet weights, the first head of a bundle is trained end to end and its trunk
is then frozen for every other head. A trunk trained on the router alone only learns what
tells bones apart (their shapes); the seven bone heads, which may train just the last 20
layers, then have little to work with (on synthetic data their AUROC stayed near 0.6-0.8).
So while the *router* trains end to end, a second classifier (normal/abnormal, all bones
pooled) sits on the router head's pooled features and both losses are minimised. The trunk
then serves all eight tasks; the auxiliary classifier is discarded, and only the router head
and the trunk are saved. Nothing changes when ImageNet weights are used.

The targets of one sample are encoded as one class index ``bone * n_aux + aux`` so the
existing one-hot batching carries both labels; :func:`joint_loss` splits them again.
:class:`JointSteps` validates both tasks, so the kept checkpoint (and early stopping)
follows the trunk's use for every head, not the router's alone, which is solved early.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops
from sklearn.metrics import log_loss

from ..bundle.network import CLASSIFIER_DROPOUT
from .batches import ImageBatches
from .loop import FullSteps, categorical_loss

#: Name of the discarded auxiliary classifier layer.
AUX_LAYER = "aux_abnormal"


def joint_targets(main: np.ndarray, aux: np.ndarray, n_aux: int) -> np.ndarray:
    """Encode (main class, auxiliary class) pairs as one index ``main * n_aux + aux``."""
    return np.asarray(main, dtype=np.int64) * n_aux + np.asarray(aux, dtype=np.int64)


def build_auxiliary_model(trunk: keras.Model, head: keras.Model, n_aux: int) -> keras.Model:
    """image -> ``concat(head probabilities, auxiliary probabilities)``.

    ``trunk`` and ``head`` are shared in place (training this model trains them); the
    auxiliary Dense layer reads the head's global-average-pooled features.
    """
    image = keras.Input(shape=trunk.inputs[0].shape[1:], dtype="float32", name="image")
    features = trunk(image)
    pooled = keras.Model(head.inputs, head.get_layer("avg_pool").output)(features)
    dropped = keras.layers.Dropout(CLASSIFIER_DROPOUT, name="aux_dropout")(pooled)
    aux = keras.layers.Dense(n_aux, activation="softmax", name=AUX_LAYER)(dropped)
    both = keras.layers.Concatenate(name="head_and_aux")([head(features), aux])
    return keras.Model(image, both, name=f"{head.name}_b0_aux")


def joint_loss(n_main: int, n_aux: int) -> Callable[[Any, Any], Any]:
    """Sum of the categorical cross-entropies of the main and the auxiliary task.

    ``y_true`` is the one-hot of :func:`joint_targets` (``n_main * n_aux`` columns);
    ``y_pred`` is :func:`build_auxiliary_model`'s ``n_main + n_aux`` columns.
    """

    def loss(y_true: Any, y_pred: Any) -> Any:
        grid = ops.reshape(y_true, (-1, n_main, n_aux))
        main = keras.losses.categorical_crossentropy(ops.sum(grid, axis=2), y_pred[:, :n_main])
        aux = keras.losses.categorical_crossentropy(ops.sum(grid, axis=1), y_pred[:, n_main:])
        return main + aux

    return loss


class JointSteps(FullSteps):
    """End-to-end steps of :func:`build_auxiliary_model`'s network.

    ``predict`` returns the head's probabilities (what the caller keeps and reports) and
    remembers the auxiliary ones; ``validation_loss`` is the sum of both tasks'
    cross-entropies, ``val_aux_targets`` giving the auxiliary class of each validation
    sample, in order.
    """

    def __init__(self, joint: keras.Model, n_main: int, val_aux_targets: np.ndarray) -> None:
        super().__init__(joint)
        self.n_main = n_main
        self.val_aux_targets = np.asarray(val_aux_targets, dtype=np.int64)
        self._aux_probs = np.empty((0, 0))

    def predict(self, batches: ImageBatches) -> np.ndarray:
        """Head probabilities of every sample; the auxiliary ones are kept aside."""
        both = self.outputs(batches)
        self._aux_probs = both[:, self.n_main :]
        return both[:, : self.n_main]

    def validation_loss(self, val: ImageBatches, probs: np.ndarray) -> float:
        """Head cross-entropy plus auxiliary cross-entropy of the last :meth:`predict`."""
        if len(self._aux_probs) != len(self.val_aux_targets):
            raise ValueError("validation_loss needs predict(val) on the validation batches first")
        aux = log_loss(
            self.val_aux_targets, self._aux_probs, labels=range(self._aux_probs.shape[1])
        )
        return categorical_loss(val, probs) + float(aux)
