"""Labelled data for training and evaluation: :mod:`.samples` (records, the split by
patient), :mod:`.mura` (the MURA-v1.1 reader), :mod:`.archive` (a DICOM archive with a
labels CSV), :mod:`.loader` (pixels through the scanner's own ingest). No Keras.
"""
