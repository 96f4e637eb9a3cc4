"""Helpers for the model tests: weights that make B0's outputs depend on the input.

Freshly initialised B0 heads give ~1/n_classes for every image (BatchNormalization
statistics are 0/1, the features tiny), so comparing two networks on them proves
nothing. :func:`scramble_weights` draws every variable at a realistic scale instead.
"""

from __future__ import annotations

import numpy as np

from batchfrac.bundle.network import iter_leaf_layers

TEST_IMAGE_SIZE = 64
# BN scales below 1 keep the scrambled network well conditioned (fp16 and float32
# rounding are not amplified beyond the tolerances checked); see calibrate_batchnorm.
GAMMA_RANGE = (0.3, 0.7)


def scramble_weights(model, seed: int) -> None:
    """Replace every weight of ``model`` (nested models included) with random values."""
    rng = np.random.default_rng(seed)
    for layer in iter_leaf_layers(model):
        for variable in layer.weights:
            shape = tuple(variable.shape)
            name = variable.name
            if "int" in str(variable.dtype):
                continue
            if name == "moving_variance" or name == "variance":
                value = rng.uniform(0.5, 1.5, shape)
            elif name == "gamma":
                value = rng.uniform(*GAMMA_RANGE, shape)
            elif name in {"beta", "moving_mean", "bias", "mean"}:
                value = rng.normal(0.0, 0.2, shape)
            else:  # kernels: He-like scale keeps activations O(1) through 16 blocks
                fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
                if layer.__class__.__name__ == "DepthwiseConv2D":
                    fan_in = int(np.prod(shape[:2]))
                value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            variable.assign(value.astype("float32"))
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()


def calibrate_batchnorm(model, x: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to its input's statistics on ``x``.

    One training-mode pass with momentum 0 (dropout off): afterwards, inference mode
    normalises like the batch did, so activations stay O(1) through all 16 blocks and
    the network is neither collapsed (output independent of the input) nor chaotic
    (float32 rounding amplified beyond the tolerances the tests check).
    """
    import keras

    saved = []
    for layer in iter_leaf_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            saved.append((layer, "momentum", layer.momentum))
            layer.momentum = 0.0
        elif isinstance(layer, keras.layers.Dropout):
            saved.append((layer, "rate", layer.rate))
            layer.rate = 0.0
    try:
        model(x, training=True)
    finally:
        for layer, attribute, value in saved:
            setattr(layer, attribute, value)


def calibrate_classifier(head, features: list[np.ndarray], seed: int) -> None:
    """Scale the head's Dense layer so its logits vary by O(1) across ``features``.

    Scrambled B0 features have large, seed-dependent magnitudes; a fixed-scale Dense
    layer would saturate the softmax (every image 1.0) or flatten it (every image 0.5).
    """
    import keras

    pooled = keras.Model(head.inputs, head.get_layer("avg_pool").output).predict_on_batch(features)
    rng = np.random.default_rng(seed)
    dense = head.get_layer("predictions")
    kernel = rng.normal(0.0, 1.0, tuple(dense.kernel.shape))
    centred = pooled - pooled.mean(axis=0)
    logits = centred @ kernel
    kernel *= 1.0 / max(float(logits.std()), 1e-12)
    bias = -(pooled.mean(axis=0) @ kernel)
    dense.set_weights([kernel.astype("float32"), bias.astype("float32")])


def images(n: int, size: int = TEST_IMAGE_SIZE, seed: int = 0) -> np.ndarray:
    """``n`` random float32 images in [0, 1] with some structure (a bright disc)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        cx, cy, r = rng.uniform(0.2, 0.8, 3)
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < (0.3 * r) ** 2).astype(np.float32)
        noise = rng.uniform(0, 0.3, (size, size))
        out[i] = np.clip(disc * 0.7 + noise, 0, 1)[..., None]
    return out
