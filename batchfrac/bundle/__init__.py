"""The model bundle: one frozen EfficientNet-B0 trunk shared by eight heads.

:mod:`.format` (``bundle.json``, loading and verifying), :mod:`.write` (creating a bundle,
adding heads atomically), :mod:`.weightfile` (the fp16 ``.npz`` weight format),
:mod:`.weights` (where ImageNet weights come from), :mod:`.network` (B0 split into trunk
and heads), :mod:`.runtime` (the Keras networks of a loaded bundle), :mod:`.padding`,
:mod:`.info` (``batchfrac models info``). Keras is imported by :mod:`.network` and
:mod:`.runtime` only, when a network is first needed.
"""
