"""Keyed pseudonyms for (0010,0020) *Patient ID* and (0008,0050) *Accession Number*.

A site that must not let identifiers leave (research copies, a PACS outside the hospital)
gives a secret key file; the same identifier under the same key always gives the same
pseudonym, so studies of one patient stay linked, and nobody without the key can reverse
or recompute it. The key's value never appears in a message or a log.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from ..errors import BatchfracError

MIN_KEY_BYTES = 32
"""Shortest key accepted: 256 bits, the output size of HMAC-SHA256."""

_PSEUDONYM_HEX_DIGITS = 16
"""16 characters fit both SH (16, Accession Number) and LO (64, Patient ID)."""


_FINGERPRINT_MESSAGE = b"batchfrac key fingerprint v1"


class PseudonymKeyError(BatchfracError):
    """The pseudonymisation key file is unreadable or too short."""


def load_key(path: Path) -> bytes:
    """The raw bytes of the key file at ``path``, one trailing newline stripped.

    Raises :class:`PseudonymKeyError` when the file cannot be read or the key is shorter
    than :data:`MIN_KEY_BYTES`; the message names the file and the length, never the key.
    """
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PseudonymKeyError(f"cannot read pseudonymisation key file {path}: {reason}") from None
    if key.endswith(b"\n"):
        key = key[:-1]
    if len(key) < MIN_KEY_BYTES:
        raise PseudonymKeyError(
            f"pseudonymisation key in {path} is {len(key)} bytes; at least {MIN_KEY_BYTES} "
            "are needed (e.g. head -c 32 /dev/urandom | base64 > key)"
        )
    return key


class Pseudonymizer:
    """HMAC-SHA256 pseudonyms: upper-case hex, the first 16 digits, keyed per field name."""

    def __init__(self, key: bytes) -> None:
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "Pseudonymizer(key=<hidden>)"

    def patient_id(self, value: str | None) -> str | None:
        """The pseudonym of a (0010,0020) *Patient ID*; ``None`` or empty stays ``None``."""
        return self._pseudonym("PatientID", value)

    def accession_number(self, value: str | None) -> str | None:
        """The pseudonym of a (0008,0050) *Accession Number*; ``None`` or empty stays ``None``."""
        return self._pseudonym("AccessionNumber", value)

    def path_component(self, value: str) -> str:
        """The pseudonym of one file or folder name (folder names often hold patient IDs,
        accession numbers or names)."""
        return self._pseudonym("PathComponent", value) or value

    @property
    def fingerprint(self) -> str:
        """16 hex digits that tell keys apart without revealing them (an HMAC of a fixed
        message under the key): recorded in the reports and in the resume ``config_id``
        so that outputs of different keys, or none, are never mixed."""
        return hmac.new(self._key, _FINGERPRINT_MESSAGE, hashlib.sha256).hexdigest()[:16]

    def _pseudonym(self, field_name: str, value: str | None) -> str | None:
        if not value:
            return None
        # The field name keeps a patient ID and an accession number that happen to be equal
        # from getting the same pseudonym (one would reveal the other).
        message = field_name.encode("ascii") + b"\x00" + value.encode("utf-8")
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return digest[:_PSEUDONYM_HEX_DIGITS].upper()
