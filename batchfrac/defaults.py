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
