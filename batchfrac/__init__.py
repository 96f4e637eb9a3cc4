"""batchfrac: batch screening of musculoskeletal radiographs in DICOM archives.

The method follows Patel et al., "Deep Learning For Abnormalities Detection in
Musculoskeletal Radiographs": a bone router sends each radiograph to one of seven
per-bone normal/abnormal classifiers, all EfficientNet-B0 by transfer learning.
The package tree follows the data flow (README, "The data flow"): ``ingest`` (walk ->
header -> decode -> preprocess) -> ``scan`` (batch -> trunk -> router head -> bone head)
-> ``report`` (aggregate -> Parquet/CSV/HTML/run.json); ``bundle`` holds the models,
``datasets``/``train``/``evaluation`` serve ML staff, ``cli`` is the command line.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batchfrac")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
