"""ONNX graphs of a bundle's trunk and heads, built straight from their weight arrays.

No converter is involved (none follows TensorFlow 2.21 / Keras 3 / numpy 2): the
networks are EfficientNet-B0 cut in two, a small fixed set of operations that this
module writes out with ``onnx.helper``. The weight arrays are those of the bundle's
``.npz`` files (:mod:`.weightfile`), keyed ``<layer>/<variable>`` as Keras names them;
the block structure (expansion, kernel size, channels) is read off their shapes, and
only the strides and the zero-padding rule come from B0's definition.

- The image input is NHWC float32 in [0, 1], as the Keras trunk takes it; it is
  transposed once to NCHW. Trunk outputs and head inputs stay NCHW (ONNX's layout):
  features are only ever handed from this trunk to these heads.
- Kernels keep the dtype they are stored in (float16 for large ones, as in the
  ``.npz``), followed by a ``Cast`` to float32: the graph computes in float32 on the
  very values Keras loads, and the file is no larger than the weight file.
  BatchNormalization stays an operator; ONNX Runtime folds it (and the casts) into
  the convolutions when it loads the graph.
- Dropout is the identity at inference and is left out; swish is ``x * sigmoid(x)``.

The graphs take any batch size (dimension ``N``). :func:`trunk_model` and
:func:`head_model` return ``onnx.ModelProto``; serialising one gives the same bytes
for the same weights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .layout import BATCHNORM_EPSILON, TRUNK_OUTPUT_LAYERS

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto, ValueInfoProto

#: ONNX opset and IR version: old enough for every maintained ONNX Runtime.
OPSET = 17
IR_VERSION = 8
#: Version of the graphs this module writes (ModelProto.producer_version); bump it
#: whenever the emitted graph changes, so files of the old shape are told apart.
GRAPH_VERSION = "1"
IMAGE_INPUT = "image"
PROBS_OUTPUT = "probabilities"
#: Trunk outputs = head inputs, named after the Keras layers (NCHW here).
FEATURES = TRUNK_OUTPUT_LAYERS
#: B0 blocks with stride 2 (the first block of stages 2, 3, 4 and 6).
STRIDE_2_BLOCKS = frozenset({"block2a", "block3a", "block4a", "block6a"})
#: keras.backend.epsilon(): the floor of the input normalisation's stddev.
NORMALIZATION_EPSILON = 1e-7
_BLOCK = re.compile(r"^(block\d[a-z])_")


class _Graph:
    """Accumulates nodes and initializers; tracks the spatial size for B0's padding."""

    def __init__(self, arrays: Mapping[str, np.ndarray], size: int, reserved: Sequence[str]):
        self.arrays = arrays
        self.size = size
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._names: set[str] = set(reserved)  # the graph's inputs

    def _unique(self, name: str) -> str:
        base, k = name, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Append one node with one output, named ``name`` (made unique); return it."""
        from onnx import helper

        out = self._unique(name)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def const(self, name: str, value: np.ndarray) -> str:
        """A float32 tensor of ``value``; float16 values are stored so and cast on load."""
        from onnx import TensorProto, numpy_helper

        value = np.ascontiguousarray(value)
        stored = value.astype(np.float16 if value.dtype == np.float16 else np.float32)
        key = self._unique(name if stored.dtype == np.float32 else f"{name}_fp16")
        self.initializers.append(numpy_helper.from_array(stored, key))
        if stored.dtype == np.float32:
            return key
        return self.op("Cast", [key], name, to=TensorProto.FLOAT)

    def weight(self, key: str) -> np.ndarray:
        try:
            return self.arrays[key]
        except KeyError:
            raise KeyError(f"weight {key} missing from the weight arrays") from None

    def conv(self, x: str, layer: str, *, stride: int = 1, bias: bool = False) -> str:
        """Keras ``Conv2D`` (kernel HWIO) with Keras' ``same``/ZeroPadding rule."""
        kernel = self.weight(f"{layer}/kernel")
        inputs = [x, self.const(f"{layer}/kernel", kernel.transpose(3, 2, 0, 1))]
        if bias:
            inputs.append(self.const(f"{layer}/bias", self.weight(f"{layer}/bias")))
        return self._conv(inputs, layer, kernel.shape[0], stride, group=1)

    def depthwise(self, x: str, layer: str, *, stride: int) -> str:
        """Keras ``DepthwiseConv2D`` (kernel H, W, C, 1) as a grouped convolution."""
        kernel = self.weight(f"{layer}/kernel")
        onnx_kernel = kernel.transpose(2, 3, 0, 1)  # (C, 1, H, W)
        inputs = [x, self.const(f"{layer}/kernel", onnx_kernel)]
        return self._conv(inputs, layer, kernel.shape[0], stride, group=kernel.shape[2])

    def _conv(self, inputs: list[str], layer: str, k: int, stride: int, group: int) -> str:
        if stride == 1:  # "same" with an odd kernel: symmetric
            pads = [k // 2] * 4
        else:  # ZeroPadding2D(correct_pad) then "valid": one less before on even sizes
            before = k // 2 - (1 - self.size % 2)
            pads = [before, before, k // 2, k // 2]
        self.size = (self.size + pads[0] + pads[2] - k) // stride + 1
        return self.op(
            "Conv", inputs, layer, kernel_shape=[k, k], strides=[stride, stride],
            pads=pads, group=group,
        )  # fmt: skip

    def batchnorm(self, x: str, layer: str) -> str:
        """Keras ``BatchNormalization`` in inference mode (moving statistics)."""
        names = ("gamma", "beta", "moving_mean", "moving_variance")
        params = [self.const(f"{layer}/{n}", self.weight(f"{layer}/{n}")) for n in names]
        return self.op("BatchNormalization", [x, *params], layer, epsilon=BATCHNORM_EPSILON)

    def swish(self, x: str, name: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x], f"{name}_sigmoid")], name)


def _block_names(arrays: Mapping[str, np.ndarray]) -> list[str]:
    return sorted({m.group(1) for key in arrays if (m := _BLOCK.match(key))})


def _branch(g: _Graph, x: str, block: str) -> str:
    """Expansion, depthwise convolution and squeeze-excite of one MBConv block."""
    if f"{block}_expand_conv/kernel" in g.arrays:
        x = g.batchnorm(g.conv(x, f"{block}_expand_conv"), f"{block}_expand_bn")
        x = g.swish(x, f"{block}_expand_activation")
    stride = 2 if block in STRIDE_2_BLOCKS else 1
    x = g.batchnorm(g.depthwise(x, f"{block}_dwconv", stride=stride), f"{block}_bn")
    x = g.swish(x, f"{block}_activation")
    se = g.op("GlobalAveragePool", [x], f"{block}_se_squeeze")
    se = g.swish(g.conv(se, f"{block}_se_reduce", bias=True), f"{block}_se_reduce_swish")
    se = g.op("Sigmoid", [g.conv(se, f"{block}_se_expand", bias=True)], f"{block}_se_gate")
    return g.op("Mul", [x, se], f"{block}_se_excite")


def _project(g: _Graph, branch: str, block_input: str, block: str, channels_in: int) -> str:
    """Projection of an MBConv block, plus B0's identity skip where the shapes allow."""
    kernel = g.weight(f"{block}_project_conv/kernel")
    x = g.batchnorm(g.conv(branch, f"{block}_project_conv"), f"{block}_project_bn")
    skip = block not in STRIDE_2_BLOCKS and int(kernel.shape[3]) == channels_in
    return g.op("Add", [x, block_input], f"{block}_add") if skip else x


def _model(
    g: _Graph, inputs: list[ValueInfoProto], outputs: list[ValueInfoProto], name: str, doc: str
) -> ModelProto:
    from onnx import helper

    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers, doc_string=doc)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="batchfrac",
        producer_version=GRAPH_VERSION,
    )
    model.ir_version = IR_VERSION
    return model


def trunk_model(arrays: Mapping[str, np.ndarray], image_size: int) -> ModelProto:
    """The trunk: NHWC image in [0, 1] -> the two NCHW features :data:`FEATURES`."""
    from onnx import TensorProto, helper

    g = _Graph(arrays, image_size, reserved=[IMAGE_INPUT])
    x = g.op("Transpose", [IMAGE_INPUT], "to_nchw", perm=[0, 3, 1, 2])
    # to_0_255 and stem_rescaling (x255, then /255) cancel; then (x - mean) / stddev.
    shape = (1, 3, 1, 1)
    mean = g.weight("stem_normalization/mean").astype(np.float32).reshape(shape)
    variance = g.weight("stem_normalization/variance").astype(np.float32).reshape(shape)
    stddev = np.maximum(np.sqrt(variance), np.float32(NORMALIZATION_EPSILON))
    x = g.op("Sub", [x, g.const("stem_normalization/mean", mean)], "stem_centre")
    x = g.op("Div", [x, g.const("stem_normalization/stddev", stddev)], "stem_normalization")
    x = g.batchnorm(g.conv(x, "stem_conv", stride=2), "stem_bn")
    x = g.swish(x, "stem_activation")
    channels = int(g.weight("stem_conv/kernel").shape[3])
    blocks = _block_names(arrays)
    last = FEATURES[0].split("_")[0]
    if not blocks or blocks[-1] != last or f"{last}_project_conv/kernel" in arrays:
        raise ValueError(f"trunk weights end at {blocks[-1:]}, expected {FEATURES[0]}")
    for block in blocks[:-1]:
        x = _project(g, _branch(g, x, block), x, block, channels)
        channels = int(g.weight(f"{block}_project_conv/kernel").shape[3])
    excite = _branch(g, x, last)  # the head projects the last block
    if [excite, x] != list(FEATURES):
        raise ValueError(f"trunk outputs {[excite, x]}, expected {list(FEATURES)}")
    widths = [int(g.weight(f"{last}_dwconv/kernel").shape[2]), channels]
    image = helper.make_tensor_value_info(
        IMAGE_INPUT, TensorProto.FLOAT, ["N", image_size, image_size, 3]
    )
    outs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", c, g.size, g.size])
        for name, c in zip(FEATURES, widths, strict=True)
    ]
    return _model(g, [image], outs, "trunk", "batchfrac EfficientNet-B0 trunk")


def head_model(arrays: Mapping[str, np.ndarray], feature_size: int, name: str) -> ModelProto:
    """A head: the two NCHW trunk features -> class probabilities ``(N, n_classes)``."""
    from onnx import TensorProto, helper

    g = _Graph(arrays, feature_size, reserved=FEATURES)
    excite, skip = FEATURES
    block = excite.split("_")[0]
    widths = g.weight(f"{block}_project_conv/kernel").shape[2:]  # (excite, skip) channels
    x = _project(g, excite, skip, block, int(widths[1]))
    if "block7a_project_conv/kernel" not in arrays:
        raise ValueError(f"head {name} weights lack block7a")
    x = _project(g, _branch(g, x, "block7a"), x, "block7a", int(widths[1]))
    x = g.batchnorm(g.conv(x, "top_conv"), "top_bn")
    x = g.swish(x, "top_activation")
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x], "avg_pool")], "avg_pool_flat", axis=1)
    kernel, bias = g.weight("predictions/kernel"), g.weight("predictions/bias")
    logits = g.op(
        "Gemm", [x, g.const("predictions/kernel", kernel), g.const("predictions/bias", bias)],
        "predictions",
    )  # fmt: skip
    probs = g.op("Softmax", [logits], PROBS_OUTPUT, axis=-1)
    inputs = [
        helper.make_tensor_value_info(f, TensorProto.FLOAT, ["N", int(c), g.size, g.size])
        for f, c in zip(FEATURES, widths, strict=True)
    ]
    output = helper.make_tensor_value_info(probs, TensorProto.FLOAT, ["N", int(kernel.shape[1])])
    return _model(g, inputs, [output], f"head_{name}", f"batchfrac head {name}")
