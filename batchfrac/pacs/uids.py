"""UIDs of the objects we make, and safe file names for UIDs we are given.

Our UIDs are derived from the run id and the source UIDs (never random), so exporting the
same run twice gives the same objects and a PACS stores them once. UIDs that come from
elsewhere (a report, a server) can be hostile: they are checked before they name a file.
"""

from __future__ import annotations

import hashlib
import re

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_MAX_UID_CHARS = 64


def is_valid_uid(value: object) -> bool:
    """Whether ``value`` is a well-formed UI value: digits and dots, no leading zeros, <= 64."""
    return isinstance(value, str) and len(value) <= _MAX_UID_CHARS and bool(_UID.fullmatch(value))


def derive_uid(*parts: str) -> str:
    """A UID derived from ``parts`` (e.g. run id, study UID, object kind).

    The same parts always give the same UID; different parts give different UIDs but for a
    SHA-512 collision (pydicom's ``generate_uid`` with entropy sources, under pydicom's root).
    """
    from pydicom.uid import generate_uid

    if not parts:
        raise ValueError("derive_uid needs at least one part")
    # pydicom joins the sources without a separator: length prefixes keep ("ab", "") and
    # ("a", "b") apart.
    return str(generate_uid(entropy_srcs=[f"{len(part)}:{part}" for part in parts]))


def uid_file_name(uid: str, suffix: str = ".dcm") -> str:
    """A file name for ``uid`` that cannot escape its folder or clash with a special name.

    A well-formed UID names itself (``1.2.3.dcm``); anything else (``../x``, control
    characters, an over-long value) becomes ``invalid-`` plus a hash of its bytes, so two
    different hostile values never share a name either.
    """
    if is_valid_uid(uid):
        return uid + suffix
    digest = hashlib.sha256(str(uid).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return f"invalid-{digest}{suffix}"
