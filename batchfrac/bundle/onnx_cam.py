"""Grad-CAM on ONNX Runtime, in numpy: no TensorFlow, no autodiff.

A head ends ``top_activation`` -> global average pooling -> Dense softmax
(``predictions``; dropout is the identity at inference). For that tail the gradient of
the class score with respect to ``A`` = ``top_activation`` is known in closed form:
with ``z = mean_hw(A) @ W + b`` and ``ds/dz`` = ``d`` (per image),
``ds/dA[h, w, k] = (W @ d)[k] / (H * W)``, the same at every position. Grad-CAM's channel
weights (the spatial mean of that gradient) are therefore ``(W @ d) / (H * W)``, and for
the default ``log_odds`` score of a two-class head ``d = e_abnormal - e_normal``: the CAM
of the difference of the two kernel columns (:mod:`batchfrac.bundle.gradcam` says why).

``A`` itself comes from the head's own ONNX graph with ``top_activation`` added as a
second output (:func:`with_cam_output`): the graph file and its sha256 are unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..enums import CamScore, Label

if TYPE_CHECKING:
    from onnx import ModelProto

#: The ONNX node (and Keras layer) whose output Grad-CAM weighs.
CAM_OUTPUT = "top_activation"
KERNEL = "predictions/kernel"
ABNORMAL = Label.ABNORMAL.column


def with_cam_output(data: bytes) -> bytes:
    """The serialised head graph ``data`` with ``top_activation`` (NCHW) as a second output."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(data)
    names = {node.output[0] for node in model.graph.node}
    if CAM_OUTPUT not in names:
        raise ValueError(f"head graph {model.graph.name} has no {CAM_OUTPUT} node")
    if CAM_OUTPUT not in [o.name for o in model.graph.output]:
        model.graph.output.append(
            helper.make_tensor_value_info(CAM_OUTPUT, TensorProto.FLOAT, None)
        )
    return bytes(model.SerializeToString())


def dense_kernel(model: ModelProto) -> np.ndarray:
    """The ``predictions`` kernel (K, n_classes) of a head graph, as float64."""
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.name in (KERNEL, f"{KERNEL}_fp16"):
            return np.asarray(numpy_helper.to_array(tensor), np.float64)
    raise ValueError(f"head graph {model.graph.name} has no {KERNEL}")


def score_gradient(probs: np.ndarray, class_index: int, score: CamScore) -> np.ndarray:
    """``d score / d z`` (N, n_classes) from the head's probabilities (N, n_classes)."""
    p = np.asarray(probs, np.float64)
    onehot = np.zeros_like(p)
    onehot[:, class_index] = 1.0
    if score is CamScore.LOGIT:
        return onehot
    if score is CamScore.PROBABILITY:
        return p[:, class_index : class_index + 1] * (onehot - p)
    others = p * (1.0 - onehot)  # log_odds: z_c - logsumexp(z_j, j != c)
    total = others.sum(axis=1, keepdims=True)
    return onehot - np.divide(others, total, out=np.zeros_like(others), where=total > 0)


def numpy_gradcam(
    activation: np.ndarray,
    kernel: np.ndarray,
    probs: np.ndarray,
    class_index: int = ABNORMAL,
    score: CamScore | str = CamScore.LOG_ODDS,
) -> np.ndarray:
    """Grad-CAM maps float32 (N, h, w) in [0, 1] from ``A`` (N, K, h, w: ONNX's NCHW), the
    Dense ``kernel`` (K, n_classes) and the head's probabilities, as
    :func:`batchfrac.bundle.gradcam.gradcam` computes them with autodiff."""
    a = np.asarray(activation, np.float64)
    _, _, h, w = a.shape
    weights = (score_gradient(probs, class_index, CamScore(score)) @ kernel.T) / (h * w)
    cam = np.maximum(np.einsum("nkhw,nk->nhw", a, weights), 0.0)
    peak = cam.max(axis=(1, 2), keepdims=True)
    out = np.zeros_like(cam)
    np.divide(cam, peak, out=out, where=peak > 0.0)
    return out.astype(np.float32)
