"""Ingest: one file on disk -> image rows with model inputs (pure; no Dask, no Keras).

The stages, in data-flow order: :mod:`.walk` (stream the archive's files) ->
:mod:`.header` (read the DICOM header into a ``DicomHeader``) -> :mod:`.decode` (pixels,
with :mod:`.display` transforms and the codec helpers :mod:`.plugins`, :mod:`.j2k`,
:mod:`.ljpeg`) -> :mod:`.preprocess` (with :mod:`.filters`). :mod:`.entry` runs them for
one file (``ingest_file``) or a chunk (``ingest_chunk``, the Dask task).
"""
