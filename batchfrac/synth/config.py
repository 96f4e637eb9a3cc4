"""Configuration and summary records of ``batchfrac synth``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom.uid import UID


class Layout(str, Enum):
    """What ``batchfrac synth`` writes: a DICOM archive or a MURA-v1.1 tree of PNGs."""

    DICOM = "dicom"
    MURA = "mura"


class Syntax(str, Enum):
    """Transfer syntaxes the generator writes, by short name (the ``--syntaxes`` values)."""

    EXPLICIT = "explicit"
    RLE = "rle"
    JPEG_LS = "jpeg-ls"
    JPEG2000 = "jpeg2000"
    JPEG_LOSSLESS = "jpeg-lossless"

    @property
    def uid(self) -> UID:
        """(0002,0010) *Transfer Syntax UID* of this syntax."""
        from pydicom.uid import (  # here: the CLI imports this module for its options
            ExplicitVRLittleEndian,
            JPEG2000Lossless,
            JPEGLosslessSV1,
            JPEGLSLossless,
            RLELossless,
        )

        return {
            Syntax.EXPLICIT: ExplicitVRLittleEndian,
            Syntax.RLE: RLELossless,
            Syntax.JPEG_LS: JPEGLSLossless,
            Syntax.JPEG2000: JPEG2000Lossless,
            Syntax.JPEG_LOSSLESS: JPEGLosslessSV1,
        }[self]


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Same config -> byte-identical output (nothing reads the clock).

    ``min_size``/``max_size`` bound both sides of DICOM images (pixels); MURA PNGs have
    their long side in ``mura_sides``. ``syntaxes`` are used in rotation (JPEG Lossless
    only where python-gdcm can encode it). ``junk`` adds the non-image files a real
    archive holds (README, .DS_Store, AppleDouble, truncated DICOM, DICOMDIR).
    """

    studies: int = 20
    seed: int = 0
    abnormal_fraction: float = 0.4
    min_size: int = 1024
    max_size: int = 3000
    syntaxes: tuple[Syntax, ...] = tuple(Syntax)
    junk: bool = True
    mura_sides: tuple[int, int] = (300, 512)

    def __post_init__(self) -> None:
        if self.studies < 1:
            raise ValueError(f"studies must be >= 1, got {self.studies}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.abnormal_fraction <= 1.0:
            raise ValueError(f"abnormal_fraction must be in [0, 1], got {self.abnormal_fraction}")
        if not 32 <= self.min_size <= self.max_size:
            raise ValueError(
                f"need 32 <= min_size <= max_size, got min_size={self.min_size}, "
                f"max_size={self.max_size}"
            )
        if not self.syntaxes:
            raise ValueError("syntaxes must name at least one transfer syntax")
        object.__setattr__(self, "syntaxes", tuple(Syntax(s) for s in self.syntaxes))
        lo, hi = self.mura_sides
        if not 32 <= lo <= hi:
            raise ValueError(f"need 32 <= mura_sides[0] <= mura_sides[1], got {self.mura_sides}")


@dataclass(frozen=True)
class SynthSummary:
    """What was written: counts per kind, for the CLI and for tests."""

    out: Path
    layout: Layout
    patients: int
    studies: int
    images: int
    abnormal_studies: int
    junk_files: int
    by_syntax: dict[str, int] = field(default_factory=dict)
    skipped_syntaxes: tuple[str, ...] = ()
