"""Synthetic radiograph -> DICOM dataset (CR or DX For Presentation), and its encoding.

The display image (float, bone bright) becomes stored values through an explicit
chain that real decoders must undo: stored = (display mapped into [lo, hi]), inverted
for MONOCHROME1; (0028,1052)/(0028,1053) *Rescale Intercept/Slope* give the modality
values; (0028,1050)/(0028,1051) *Window Center/Width*, when present, bracket them.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
)

from ..enums import Bone
from .config import Syntax
from .plan import ImagePlan, StudyPlan, stream

MANUFACTURER = "batchfrac-synth"
_SNOMED = {  # (0008,2218) Anatomic Region Sequence, SNOMED CT
    Bone.ELBOW: ("16953009", "Elbow joint"),
    Bone.FINGER: ("7569003", "Finger"),
    Bone.FOREARM: ("14975008", "Forearm"),
    Bone.HAND: ("85562004", "Hand"),
    Bone.HUMERUS: ("85050009", "Humerus"),
    Bone.SHOULDER: ("16982005", "Shoulder region"),
    Bone.WRIST: ("74670003", "Wrist joint"),
}
_CR_RESCALE = ((1.0, 0.0), (1.0, 0.0), (2.0, 0.0), (1.0, -1024.0), (0.5, 100.0))


def stored_values(
    display: np.ndarray, bits_stored: int, photometric: str, rng: np.random.Generator
) -> np.ndarray:
    """Display image [0, 1] (bone bright) -> uint16 stored values.

    Uses part of the ``bits_stored`` range, as detectors do; MONOCHROME1 stores the
    inverted values (bone low), so that the display after inversion is the same.
    """
    top = (1 << bits_stored) - 1
    lo = rng.uniform(0.0, 0.08) * top
    # deep detectors seldom fill their range
    hi = rng.uniform(0.85, 1.0) * top if bits_stored <= 12 else rng.uniform(0.3, 1.0) * top
    values = np.rint(lo + np.clip(display, 0.0, 1.0) * (hi - lo))
    if photometric == "MONOCHROME1":
        values = top - values
    return np.clip(values, 0, top).astype(np.uint16)


def _study_modules(ds: Dataset, study: StudyPlan) -> None:
    p = study.patient
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.StudyID = f"{study.index + 1}"
    ds.AccessionNumber = study.accession
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"XR {study.bone.value.upper()} {len(study.images)} VIEWS"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "synthetic radiograph"
    ds.InstitutionName = "SYNTHETIC DATA - NO PATIENT"


def build_dataset(pixels: np.ndarray, study: StudyPlan, image: ImagePlan, seed: int) -> Dataset:
    """An uncompressed CR or DX dataset holding ``pixels`` (display float [0, 1]).

    Patient, study, series and image attributes come from the plan, so that the
    same patient and study share (0010,0020) *Patient ID* and (0020,000D) *Study
    Instance UID* across files.
    """
    rng = stream(seed, 5, study.index, image.number)
    dx = study.modality == "DX"
    sop_class = DigitalXRayImageStorageForPresentation if dx else ComputedRadiographyImageStorage
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = UID(image.sop_instance_uid)
    _study_modules(ds, study)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = image.sop_instance_uid
    ds.Modality = study.modality
    ds.SeriesInstanceUID = image.series_instance_uid
    ds.SeriesNumber = image.series
    ds.SeriesDescription = f"{study.bone.value.upper()} {image.view.value}"
    ds.Laterality = study.side
    ds.ImageLaterality = study.side
    if study.body_part is not None:
        ds.BodyPartExamined = study.body_part
    ds.ViewPosition = image.view.value
    ds.InstanceNumber = image.number
    ds.ContentDate = study.study_date
    ds.ContentTime = study.study_time
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["A", "F"] if study.side == "L" else ["P", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = "Synthetic radiograph made by batchfrac synth; no patient data."
    ds.KVP = round(float(rng.uniform(50, 70)), 1)
    spacing = round(float(rng.uniform(0.1, 0.2)), 3)
    ds.ImagerPixelSpacing = [spacing, spacing]

    bits = image.bits_stored
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = image.photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    stored = stored_values(pixels, bits, image.photometric, rng)
    slope, intercept = (1.0, 0.0) if dx else _CR_RESCALE[int(rng.integers(len(_CR_RESCALE)))]
    ds.RescaleIntercept = f"{intercept:g}"
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleType = "US"
    if dx or rng.random() < 0.5:
        lo, hi = np.percentile(stored, [1.0, 99.5]) * slope + intercept
        ds.WindowCenter = f"{(lo + hi) / 2:.1f}"
        ds.WindowWidth = f"{max(hi - lo, 1.0):.1f}"
    if dx:
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PixelIntensityRelationship = "LOG"
        # -1: higher values mean less X-ray intensity (bone bright in MONOCHROME2)
        ds.PixelIntensityRelationshipSign = -1 if image.photometric == "MONOCHROME2" else 1
        ds.DetectorType = "SCINTILLATOR"
        ds.LossyImageCompression = "00"
        code, meaning = _SNOMED[study.bone]
        region = Dataset()
        region.CodeValue = code
        region.CodingSchemeDesignator = "SCT"
        region.CodeMeaning = meaning
        ds.AnatomicRegionSequence = Sequence([region])
    ds.PixelData = stored.tobytes()
    return ds


def jpeg_lossless_available() -> bool:
    """Whether python-gdcm can encode JPEG Lossless SV1 (1.2.840.10008.1.2.4.70)."""
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    return True


def _gdcm_jpeg_lossless(ds: Dataset) -> bytes:
    """The JPEG Lossless SV1 codestream of ``ds``'s pixels, encoded by GDCM."""
    import gdcm

    writer = gdcm.ImageWriter()  # keeps the image alive while we use it
    image = writer.GetImage()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((int(ds.Columns), int(ds.Rows), 1))
    pi = gdcm.PhotometricInterpretation.GetPIType(str(ds.PhotometricInterpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(pi))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.ImplicitVRLittleEndian))
    bits = int(ds.BitsStored)
    image.SetPixelFormat(gdcm.PixelFormat(1, 16, bits, bits - 1, 0))
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetByteStringValue(ds.PixelData)
    image.SetDataElement(element)
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(image)
    if not change.Change():
        raise RuntimeError("GDCM could not encode JPEG Lossless SV1")
    fragments = change.GetOutput().GetDataElement().GetSequenceOfFragments()
    parts = [
        fragments.GetFragment(i).GetByteValue().GetBuffer().encode("utf-8", "surrogateescape")
        for i in range(fragments.GetNumberOfFragments())
    ]
    return b"".join(parts)


def encode(ds: Dataset, syntax: Syntax) -> Dataset:
    """``ds`` with its pixel data in ``syntax`` (in place; returned for chaining)."""
    if syntax is Syntax.EXPLICIT:
        return ds
    if syntax is Syntax.JPEG_LOSSLESS:
        frame = _gdcm_jpeg_lossless(ds)
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = syntax.uid
        return ds
    ds.compress(syntax.uid, generate_instance_uid=False)
    return ds
