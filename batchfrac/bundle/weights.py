"""Where the pretrained EfficientNet-B0 weights of a trunk come from.

Three sources, as the ``--weights`` option spells them:

- ``imagenet``: Keras' own ``efficientnetb0_notop.h5``, downloaded once by
  ``keras.utils.get_file`` into ``$KERAS_HOME/models`` (``~/.keras/models``) and
  checked against Keras' published hash;
- a path to a local copy of that file (air-gapped sites);
- ``none``: random initialisation.

This module does not import Keras at import time; it only resolves and describes the
source. :func:`batchfrac.bundle.network.build_backbone` loads it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import BundleError

IMAGENET_FILE_NAME = "efficientnetb0_notop.h5"
IMAGENET_URL = "https://storage.googleapis.com/keras-applications/" + IMAGENET_FILE_NAME
# Keras' published (md5) hash of efficientnetb0_notop.h5 (keras.applications.efficientnet).
IMAGENET_FILE_HASH = "50bc09e76180e00e4465e1a485ddc09d"

# ImageNet statistics on the [0, 1] scale (after B0's own Rescaling(1/255)).
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class WeightsSource:
    """A resolved ``--weights`` value: ``kind`` is ``imagenet``, ``file`` or ``none``."""

    kind: str
    path: Path | None = None
    sha256: str | None = None

    def origin(self) -> dict[str, str]:
        """The ``weights_origin`` record of ``bundle.json``."""
        record = {"kind": self.kind}
        if self.path is not None:
            record["file"] = self.path.name if self.kind == "imagenet" else str(self.path.resolve())
        if self.sha256 is not None:
            record["sha256"] = self.sha256
        return record


def parse_weights_option(value: str | Path | None) -> str | Path | None:
    """Map a ``--weights`` string to ``"imagenet"``, a :class:`Path` or ``None``."""
    if value is None or isinstance(value, Path):
        return value
    lowered = value.strip().lower()
    if lowered == "none":
        return None
    if lowered == "imagenet":
        return "imagenet"
    return Path(value)


def resolve_weights(weights: str | Path | None) -> WeightsSource:
    """Resolve ``weights`` to a local file (downloading ImageNet weights if not cached).

    Raises :class:`BundleError` for a path that does not exist or is not an ``.h5``
    file, or for any other string than ``imagenet``/``none``.
    """
    weights = parse_weights_option(weights)
    if weights is None:
        return WeightsSource("none")
    if weights == "imagenet":
        import keras

        # Keras verifies the hash of a fresh download and of the cached file.
        cached = Path(
            keras.utils.get_file(
                IMAGENET_FILE_NAME,
                IMAGENET_URL,
                cache_subdir="models",
                file_hash=IMAGENET_FILE_HASH,
            )
        )
        return WeightsSource("imagenet", cached, file_sha256(cached))
    path = Path(weights)
    if not path.is_file():
        raise BundleError(f"weights file not found: {path} (expected an {IMAGENET_FILE_NAME})")
    if path.suffix.lower() not in {".h5", ".hdf5"}:
        raise BundleError(
            f"weights file must be a Keras .h5 file like {IMAGENET_FILE_NAME}: {path}"
        )
    return WeightsSource("file", path, file_sha256(path))
