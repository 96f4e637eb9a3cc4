"""The **header** stage: read a file's DICOM header (never its pixel data) into a
:class:`~batchfrac.records.DicomHeader`, and decide whether it is an image we screen.

A file is recognised as DICOM by ``b"DICM"`` at offset 128 (PS3.10 7.1), not by
trusting ``dcmread(force=True)``, which "reads" any file. Legacy files written
without the 128-byte preamble (a raw data set, or a File Meta group, at offset 0)
are recognised by a cheap look at their first element and read with
``has_preamble=False``.

Memory is bounded by what the header holds, not by the file: values larger than
:data:`~batchfrac.ingest.bounded_io.DEFAULT_DEFER_SIZE` are skipped (a 300 MB private
element costs nothing), and a deflated data set is inflated as a stream
(:mod:`batchfrac.ingest.deflated`). Strings reach the record without control
characters (NUL included), so every report writer accepts them.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from ..defaults import DEFAULT_MODALITIES
from ..enums import Reason
from ..errors import FileRejected
from ..records import DicomHeader
from .bounded_io import (
    DEFAULT_DEFER_SIZE,
    DeflatedStreamError,
    InflateLimitExceeded,
)
from .capture import describe
from .deflated import is_deflated, read_deflated_header
from .image_pixel import attribute_value, tag_name

_PREAMBLE_LENGTH = 128
_MAGIC = b"DICM"
_HEAD_LENGTH = _PREAMBLE_LENGTH + len(_MAGIC)
_PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
_UNDEFINED_LENGTH = 0xFFFFFFFF
# VRs whose explicit encoding has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN"})
_LONG_VRS |= {b"UR", b"UT", b"UV"}
_VRS = _LONG_VRS | {
    vr.encode() for vr in "AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split()
}
# pydicom raises any of these on a malformed header; they belong to the file, not to us.
_MALFORMED = (
    InvalidDicomError,
    EOFError,
    struct.error,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    OverflowError,
    NotImplementedError,
    BytesLengthException,  # a US/FD value whose length is no multiple of 2/8
)
# C0 and C1 control characters (NUL included) and DEL: not text a report may carry.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_REPLACEMENT = "\ufffd"

# SOP classes that never hold a radiograph (PS3.4 B.5), as UID prefixes: a prefix
# ending in "." matches the whole family, one without matches that UID exactly.
_NON_IMAGE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.88.",  # structured reports, Key Object Selection (KOS)
    "1.2.840.10008.5.1.4.1.1.11.",  # presentation states
    "1.2.840.10008.5.1.4.1.1.481.",  # RT objects (RT Image .481.1 is kept, below)
    "1.2.840.10008.5.1.4.1.1.66",  # raw data
    "1.2.840.10008.5.1.4.1.1.66.",  # registration, fiducials, segmentation (SEG)
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF / CDA / STL / OBJ / MTL
    "1.2.840.10008.5.1.4.1.1.9.",  # waveforms (ECG, audio, ...)
    "1.2.840.10008.5.1.4.1.1.4.2",  # MR spectroscopy
    "1.2.840.10008.5.1.4.1.1.68.",  # surface scans
    "1.2.840.10008.5.1.4.1.1.90.",  # content assessment results
    "1.2.840.10008.5.1.4.1.1.91.",  # microscopy bulk simple annotations
)
_RT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.1"


def read_header(path: Path) -> DicomHeader:
    """Read the header of ``path`` (stopping before the pixel data) into a ``DicomHeader``.

    Missing optional attributes are ``None``; (0028,0008) *Number of Frames*
    defaults to 1, (0028,0002) *Samples per Pixel* to 1, and (0028,0010) *Rows* /
    (0028,0011) *Columns* to 0. For files without File Meta Information,
    ``transfer_syntax_uid`` is the native syntax pydicom inferred from the encoding.

    Raises
    ------
    FileRejected
        ``not_dicom``: no ``DICM`` magic and no recognisable raw data set;
        ``dicomdir``: a Media Storage Directory (DICOMDIR);
        ``truncated``: the file ends inside the header, or before the end of the
        value length declared by its pixel data element;
        ``too_large``: a deflated data set inflates past
        :data:`~batchfrac.ingest.deflated.DEFAULT_INFLATE_LIMIT` before its pixel data;
        ``read_error``: the file cannot be read (``OSError``), its header is malformed
        or nested too deeply, or an attribute read here has an unusable value.
    """
    try:
        with open(path, "rb") as fp:
            size = os.fstat(fp.fileno()).st_size
            head = fp.read(_HEAD_LENGTH)
            has_preamble = head[_PREAMBLE_LENGTH:] == _MAGIC
            if not has_preamble and not _looks_like_raw_dataset(head, size):
                raise FileRejected(Reason.NOT_DICOM, "no DICM prefix at offset 128")
            fp.seek(0)
            try:
                ds = _read_dataset(fp, size, has_preamble)
                _reject_directory(ds)
                return _header_from_dataset(ds, has_preamble)
            except DeflatedStreamError as exc:
                raise FileRejected(Reason.TRUNCATED, f"deflated data set: {exc}") from exc
            except InflateLimitExceeded as exc:
                raise FileRejected(Reason.TOO_LARGE, str(exc)) from exc
            except RecursionError as exc:  # pydicom recurses once per nested sequence
                raise FileRejected(
                    Reason.READ_ERROR, f"sequences nested too deeply to read ({describe(exc)})"
                ) from exc
            except _MALFORMED as exc:
                # Without the magic our guess that this is DICOM was only a guess.
                reason = Reason.READ_ERROR if has_preamble else Reason.NOT_DICOM
                raise FileRejected(reason, f"malformed header: {describe(exc)}") from exc
    except OSError as exc:
        raise FileRejected(Reason.READ_ERROR, describe(exc)) from exc


def check_image(header: DicomHeader, modalities: Collection[str] = DEFAULT_MODALITIES) -> None:
    """Reject objects that are not images of an allowed modality.

    Raises ``FileRejected(non_image)`` for a (0008,0016) *SOP Class UID* that never
    holds a radiograph (SR, KOS, SEG, RT, presentation states, encapsulated
    documents, waveforms...) or for zero (0028,0010) *Rows* / (0028,0011)
    *Columns*; then ``FileRejected(unsupported_modality)`` when (0008,0060)
    *Modality* is missing or not in ``modalities`` (compared case-insensitively).
    """
    sop_class = header.sop_class_uid or ""
    if _is_non_image_sop_class(sop_class):
        name = UID(sop_class).name
        raise FileRejected(Reason.NON_IMAGE, f"SOP Class {name} holds no image")
    if header.rows <= 0 or header.columns <= 0:
        raise FileRejected(
            Reason.NON_IMAGE, f"no image: Rows={header.rows}, Columns={header.columns}"
        )
    allowed = {modality.strip().upper() for modality in modalities}
    modality = (header.modality or "").strip().upper()
    if modality not in allowed:
        shown = modality or "missing"
        raise FileRejected(
            Reason.UNSUPPORTED_MODALITY,
            f"Modality {shown}, expected one of {', '.join(sorted(allowed))}",
        )


def _read_dataset(fp: BinaryIO, size: int, has_preamble: bool) -> Dataset:
    """Everything before the pixel data, values over the defer size left in the file."""
    if is_deflated(fp, force=not has_preamble):
        # Inflated only as far as the pixel data; a truncated stream raises on the way.
        return read_deflated_header(fp, force=not has_preamble)[0]
    ds = dcmread(fp, stop_before_pixels=True, defer_size=DEFAULT_DEFER_SIZE, force=not has_preamble)
    _check_complete(ds, fp, size)
    return ds


def _looks_like_raw_dataset(head: bytes, size: int) -> bool:
    """Whether ``head`` starts like a preamble-less DICOM stream (PS3.10 7.1 predecessors).

    Accepted: a File Meta element (0002,xxxx) or a group 0008 element in
    explicit VR little or big endian (a known two-letter VR at offset 4), or in
    implicit VR little endian (a 4-byte value length that fits the file).
    """
    if len(head) < 8:
        return False
    group_le, group_be = struct.unpack("<H", head[:2])[0], struct.unpack(">H", head[:2])[0]
    if head[4:6] in _VRS:
        return group_le in (0x0002, 0x0008) or group_be == 0x0008
    implicit_length = struct.unpack("<L", head[4:8])[0]
    return group_le == 0x0008 and implicit_length <= size - 8


def _reject_directory(ds: Dataset) -> None:
    """Raise ``FileRejected(dicomdir)`` for a Media Storage Directory (PS3.10 8.6)."""
    meta = getattr(ds, "file_meta", None) or Dataset()
    sop_classes = {meta.get("MediaStorageSOPClassUID"), ds.get("SOPClassUID")}
    if MediaStorageDirectoryStorage in sop_classes or "DirectoryRecordSequence" in ds:
        raise FileRejected(Reason.DICOMDIR, "a DICOMDIR indexes files, it holds no image")


def _check_complete(ds: Dataset, fp: BinaryIO, size: int) -> None:
    """Raise ``FileRejected(truncated)`` when the file ends before the header (or the
    pixel data value it announces) does; pydicom itself returns a partial data set.
    """
    if len(ds) == 0:
        raise FileRejected(Reason.TRUNCATED, "no data set after the file meta information")
    position = fp.tell()
    if position < size:  # pydicom stopped at the pixel data element
        _check_pixel_data_length(ds, fp, position, size)
        return
    last = max((ds.get_item(tag, keep_deferred=True) for tag in ds.keys()), key=_value_offset)
    # An undefined-length sequence (a parsed DataElement) has no end we could check cheaply.
    if isinstance(last, RawDataElement) and last.length != _UNDEFINED_LENGTH:
        end = last.value_tell + last.length
        if end != size:
            raise FileRejected(
                Reason.TRUNCATED,
                f"file ends at byte {size} inside element {last.tag}, which ends at {end}",
            )


def _value_offset(element: RawDataElement | DataElement) -> int:
    offset = element.value_tell if isinstance(element, RawDataElement) else element.file_tell
    return offset or 0


def _check_pixel_data_length(ds: Dataset, fp: BinaryIO, position: int, size: int) -> None:
    """Compare the length declared by the pixel data element at ``position`` with the file."""
    endian = "<" if ds.original_encoding[1] is not False else ">"
    element = fp.read(12)
    if len(element) < 8:
        raise FileRejected(Reason.TRUNCATED, "file ends inside the pixel data element header")
    group, elem = struct.unpack(f"{endian}HH", element[:4])
    if (group << 16 | elem) not in _PIXEL_DATA_TAGS:
        return
    # Decide implicit/explicit from the bytes, as pydicom does: some writers switch
    # to implicit VR mid-file whatever the transfer syntax says.
    if element[4:6] not in _VRS:
        header_length, length = 8, struct.unpack(f"{endian}L", element[4:8])[0]
    elif element[4:6] in _LONG_VRS:
        if len(element) < 12:
            raise FileRejected(Reason.TRUNCATED, "file ends inside the pixel data element header")
        header_length, length = 12, struct.unpack(f"{endian}L", element[8:12])[0]
    else:
        header_length, length = 8, struct.unpack(f"{endian}H", element[6:8])[0]
    available = size - position - header_length
    if length != _UNDEFINED_LENGTH and length > available:
        raise FileRejected(
            Reason.TRUNCATED, f"pixel data declares {length} bytes, the file holds {available}"
        )


def _header_from_dataset(ds: Dataset, has_preamble: bool) -> DicomHeader:
    meta = getattr(ds, "file_meta", None) or Dataset()
    syntax = _text(meta, "TransferSyntaxUID") or _inferred_syntax(ds)
    return DicomHeader(
        sop_class_uid=_text(ds, "SOPClassUID") or _text(meta, "MediaStorageSOPClassUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        accession_number=_text(ds, "AccessionNumber"),
        modality=_text(ds, "Modality"),
        body_part_examined=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        laterality=_text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        photometric_interpretation=_text(ds, "PhotometricInterpretation"),
        rows=_integer(ds, "Rows") or 0,
        columns=_integer(ds, "Columns") or 0,
        number_of_frames=max(_integer(ds, "NumberOfFrames") or 1, 1),
        bits_stored=_integer(ds, "BitsStored"),
        samples_per_pixel=_integer(ds, "SamplesPerPixel") or 1,
        transfer_syntax_uid=syntax,
        has_preamble=has_preamble,
    )


def _inferred_syntax(ds: Dataset) -> str | None:
    """The native syntax a data set without File Meta Information was read in."""
    is_implicit, is_little_endian = ds.original_encoding
    if is_implicit is None:
        return None
    if is_implicit:
        return str(ImplicitVRLittleEndian)
    return str(ExplicitVRLittleEndian if is_little_endian else ExplicitVRBigEndian)


def _text(ds: Dataset, keyword: str) -> str | None:
    """A string attribute as a plain ``str`` (multiple values joined by ``\\``), or ``None``.

    Leading and trailing spaces and NULs (padding) are stripped; any other control
    character becomes U+FFFD, so that no report writer (CSV on Python 3.10 refuses NUL)
    and no log line meets one.
    """
    value = attribute_value(ds, keyword, Reason.READ_ERROR)
    if value is None:
        return None
    if isinstance(value, MultiValue):
        value = "\\".join(str(item) for item in value)
    text = str(value).strip(" \x00")
    return _CONTROL.sub(_REPLACEMENT, text) or None


def _integer(ds: Dataset, keyword: str) -> int | None:
    """An integer attribute (US or IS) of one value as a plain ``int``; ``None`` when
    missing or empty. Raises ``FileRejected(read_error)`` for several values or a value
    that is not an integer: these attributes size the image, a guess would be wrong."""
    value = attribute_value(ds, keyword, Reason.READ_ERROR)
    if isinstance(value, (MultiValue, list, tuple)):
        if len(value) > 1:
            shown = "\\".join(str(item) for item in list(value)[:4])
            raise FileRejected(
                Reason.READ_ERROR,
                f"{tag_name(keyword)} has {len(value)} values ({shown}), expected 1",
            )
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (bytes, bytearray)):
            raise TypeError("undecoded bytes")
        return int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FileRejected(
            Reason.READ_ERROR,
            f"{tag_name(keyword)} {_CONTROL.sub(_REPLACEMENT, repr(value))[:60]}"
            f" is not an integer ({describe(exc)})",
        ) from exc


def _is_non_image_sop_class(uid: str) -> bool:
    if uid == _RT_IMAGE_STORAGE:
        return False
    return any(
        uid.startswith(prefix) if prefix.endswith(".") else uid == prefix
        for prefix in _NON_IMAGE_SOP_CLASSES
    )
