"""Where EfficientNet-B0 is split into the shared trunk and the heads, by layer name.

Kept free of Keras so that the ONNX side of a bundle (:mod:`.onnx_graph`,
:mod:`.onnx_runtime`) and the Keras side (:mod:`.network`) name the same tensors.
"""

from __future__ import annotations

#: The trunk's two outputs. ``block6d_add`` (in the head) adds block6d's branch to
#: ``block6c_add``, which is why the trunk hands the head two tensors.
TRUNK_OUTPUT_LAYERS = ("block6d_se_excite", "block6c_add")
#: The first layer of every head: the paper's "last 20 layers" start here.
HEAD_FIRST_LAYER = "block6d_project_conv"
#: Input names of a Keras head (one per trunk output, same order).
HEAD_INPUT_NAMES = ("trunk_block6d_se_excite", "trunk_block6c_add")
#: Keras' BatchNormalization epsilon, which EfficientNet-B0 keeps.
BATCHNORM_EPSILON = 1e-3
