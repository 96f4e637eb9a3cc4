"""Models: EfficientNet-B0 split into a shared frozen trunk and per-task heads.

- :mod:`.network`: build/split B0, build heads, the paper's freezing recipe (Keras).
- :mod:`.weights`: where pretrained weights come from (``imagenet``, a file, none).
- :mod:`.weightfile`: the framework-independent fp16 ``.npz`` weight format.
- :mod:`.bundle`: the bundle on disk (bundle.json + weight files), load/create/write_head.
- :mod:`.runtime`: the Keras networks of a loaded bundle and batched inference.
- training and evaluation (data, loop, metrics, ...) live beside them.

Importing this package does not import Keras; only :mod:`.network` and
:mod:`.runtime` do, and they are imported when a network is needed.
"""
