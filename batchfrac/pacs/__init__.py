"""The PACS round trip: results as DICOM objects, sent to a PACS, and studies pulled from one.

- :mod:`.results` reads a finished scan's reports; :mod:`.identity` the source headers.
- :mod:`.sr` builds one Structured Report per study, :mod:`.kos` one Key Object Selection per
  abnormal study; :mod:`.export` writes them (deterministic bytes for the same run).
- :mod:`.send` stores them by DICOMweb STOW-RS or DIMSE C-STORE; :mod:`.ledger` remembers
  what each destination already holds.
- :mod:`.pull` retrieves studies by QIDO-RS/WADO-RS into a folder that ``scan`` reads.

Nothing here is imported by ``batchfrac --help``: highdicom, pynetdicom, dicomweb-client and
pyarrow are imported inside the functions that need them.
"""
