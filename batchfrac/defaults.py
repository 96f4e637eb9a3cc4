"""Defaults shared by the command line and the library, in one dependency-free place.

The CLI shows these in ``--help`` without importing pydicom, Dask or Keras; the library
functions use the same values when a caller passes nothing.
"""

from __future__ import annotations

#: (0008,0060) *Modality* values screened by default: computed and digital radiography.
DEFAULT_MODALITIES: tuple[str, ...] = ("CR", "DX")

#: P(abnormal) above which an image or a study is called abnormal (MURA's rule), unless
#: the model bundle records another threshold for the bone.
DEFAULT_THRESHOLD = 0.5

#: Router confidence below which an image row is flagged ``low_router_confidence``.
DEFAULT_LOW_CONFIDENCE = 0.5

#: Seconds one file may take on a Dask worker (a 2000 x 2500 radiograph takes well under
#: one); a file still decoding then is taken to hang (``batchfrac scan --timeout``).
DEFAULT_TIMEOUT_S = 300.0

#: Caps on one file, checked from its header before any pixel data is read (see
#: ``batchfrac.ingest.decode.DecodePolicy``): pixels of one frame (Rows x Columns x
#: Samples), frames decoded per file, and the stored bytes of those frames together.
DEFAULT_MAX_FRAME_PIXELS = 64_000_000
DEFAULT_MAX_FRAMES = 256
DEFAULT_MAX_DECODED_BYTES = 1 << 30

#: Rows or Columns under this: too small to score (``too_small``, skipped).
DEFAULT_MIN_SIDE = 32

#: Grad-CAM heatmaps a scan draws at most (``--heatmaps-max``): each costs a trunk and
#: head pass, a backward step and two PNGs, and the report page shows them all.
DEFAULT_HEATMAPS_MAX = 200
