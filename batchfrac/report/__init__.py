"""Report: rows, schemas and the files auditors read.

:mod:`.rows` (image and study rows) with :mod:`.bodypart` (router vs Body Part Examined)
-> :mod:`.aggregate` (image rows -> study rows, the study-bone rule) -> :mod:`.schema`
(Arrow schemas from ``schemas/``) -> :mod:`.parquet`, :mod:`.csv_export`, :mod:`.html`,
:mod:`.runinfo` (``run.json``), assembled by :mod:`.writer`.
"""
