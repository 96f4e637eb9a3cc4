"""Scan: the whole job of ``batchfrac scan`` over an archive, resumable.

:mod:`.config` (what was asked) -> :mod:`.chunks` (files not yet reported, in chunks) ->
:mod:`.cluster` (decoding on Dask workers, with the :mod:`.retry` policy and the
per-file :mod:`.watchdog`) -> :mod:`.feed` and :mod:`.inference` (fixed-size batches
through the trunk and heads) -> :mod:`.resume` (part files, the ledger) ;
:mod:`.run` orchestrates it and :mod:`.progress` shows it. Dask is imported here only.
"""
