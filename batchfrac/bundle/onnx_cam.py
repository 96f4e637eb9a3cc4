"""Grad-CAM on ONNX Runtime, in numpy: no TensorFlow, no autodiff.

A head ends ``top_activation`` -> global average pooling -> Dense softmax
(``predictions``; dropout is the identity at inference). For that tail the gradient of
the class score with respect to ``A`` = ``top_activation`` is known in closed form:
with ``z = mean_hw(A) @ W + b`` and ``ds/dz`` = ``d`` (per image),
``ds/dA[h, w, k] = (W @ d)[k] / (H * W)``, the same at every position. Grad-CAM's channel
weights (the spatial mean of that gradient) are therefore ``(W @ d) / (H * W)``, and for
the default ``log_odds`` score of a two-class head ``d = e_abnormal - e_normal``: the CAM
of the difference of the two kernel columns (:mod:`batchfrac.bundle.gradcam` says why).

``A`` and the Dense kernel ``W`` come from the head's own ONNX graph, with both added as
outputs (:func:`with_cam_output`): the graph file and its sha256 are unchanged, and one
head session serves both the probabilities (the scan asks for those alone) and, from the
same pass, the maps.
"""

from __future__ import annotations

import numpy as np

from ..enums import CamScore, Label

#: The ONNX node (and Keras layer) whose output Grad-CAM weighs.
CAM_OUTPUT = "top_activation"
#: The Dense kernel (K, n_classes), float32 (a Cast of the stored float16 initializer, or
#: the float32 initializer itself).
KERNEL = "predictions/kernel"
ABNORMAL = Label.ABNORMAL.column
#: ``TensorProto.FLOAT``.
_FLOAT = 1


def with_cam_output(data: bytes) -> bytes:
    """The serialised head graph ``data`` with ``top_activation`` (NCHW) and the Dense
    kernel as further float32 outputs.

    Written without the ``onnx`` package (its import alone costs a scan more than a
    second): a protocol buffer parser merges a repeated occurrence of a message field
    into the first, so ``ModelProto`` bytes followed by a ``graph`` field that holds only
    two ``output`` entries parse as the graph with those outputs appended, exactly what
    ``onnx.helper`` would write (checked in the tests). ONNX Runtime refuses the graph if
    it has no value of either name.
    """
    outputs = b"".join(
        _field(
            _GRAPH_OUTPUT, _field(1, name.encode()) + _field(2, _field(1, _varint_field(1, _FLOAT)))
        )
        for name in (CAM_OUTPUT, KERNEL)
    )
    return data + _field(_MODEL_GRAPH, outputs)


#: Field numbers in onnx.proto: ModelProto.graph, GraphProto.output (ValueInfoProto:
#: name = 1, type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor.elem_type = 1).
_MODEL_GRAPH = 7
_GRAPH_OUTPUT = 12


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


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
