"""``batchfrac synth``: deterministic synthetic radiograph archives for tests and demos.

The images are drawn, not sampled from patients: per-bone skeletons
(:mod:`.anatomy`, :mod:`.hand`, :mod:`.arm`) become X-ray attenuation
(:mod:`.raster`), optionally injured (:mod:`.abnormal`), and are composed into a
processed radiograph (:mod:`.render`). :mod:`.archive` writes them as a DICOM
archive (:mod:`.dicom`, :mod:`.junk`), :mod:`.mura` as a MURA-v1.1 tree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .abnormal import Abnormality
    from .anatomy import VIEWS, View
    from .archive import GROUND_TRUTH_COLUMNS, generate_archive
    from .config import Layout, Syntax, SynthConfig, SynthSummary
    from .contact_sheet import render_contact_sheet, write_contact_sheet
    from .mura import MURA_TRUTH_COLUMNS, generate_mura
    from .render import render_radiograph

#: Where each public name lives: loaded on first use, so that the CLI, which needs only
#: :mod:`.config` to declare ``batchfrac synth``'s options, does not load pydicom and
#: the renderer with every command.
_LOCATIONS = {
    "Abnormality": ".abnormal",
    "VIEWS": ".anatomy",
    "View": ".anatomy",
    "GROUND_TRUTH_COLUMNS": ".archive",
    "generate_archive": ".archive",
    "Layout": ".config",
    "Syntax": ".config",
    "SynthConfig": ".config",
    "SynthSummary": ".config",
    "render_contact_sheet": ".contact_sheet",
    "write_contact_sheet": ".contact_sheet",
    "MURA_TRUTH_COLUMNS": ".mura",
    "generate_mura": ".mura",
    "render_radiograph": ".render",
}

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "MURA_TRUTH_COLUMNS",
    "VIEWS",
    "Abnormality",
    "Layout",
    "SynthConfig",
    "SynthSummary",
    "Syntax",
    "View",
    "generate_archive",
    "generate_mura",
    "render_contact_sheet",
    "render_radiograph",
    "write_contact_sheet",
]


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LOCATIONS[name], __name__), name)
