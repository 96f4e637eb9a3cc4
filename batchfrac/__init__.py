"""batchfrac: batch screening of musculoskeletal radiographs in DICOM archives.

The method follows Patel et al., "Deep Learning For Abnormalities Detection in
Musculoskeletal Radiographs": a bone router sends each radiograph to one of seven
per-bone normal/abnormal classifiers, all EfficientNet-B0 by transfer learning.
See ``DESIGN.md`` for the data flow: walk -> header -> decode -> preprocess ->
batch -> trunk -> router head -> bone head -> aggregate -> report.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batchfrac")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
