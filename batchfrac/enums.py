"""Fixed vocabularies shared by the CLI, the reports and the schema files.

The string values are part of the public contract: they appear as CLI choices,
as Parquet column values and in ``schemas/*.json``. Change them only with a
schema version bump.
"""

from __future__ import annotations

from enum import Enum


class Bone(str, Enum):
    """The seven MURA upper-extremity study types, in router class order."""

    ELBOW = "elbow"
    FINGER = "finger"
    FOREARM = "forearm"
    HAND = "hand"
    HUMERUS = "humerus"
    SHOULDER = "shoulder"
    WRIST = "wrist"

    @property
    def mura_part(self) -> str:
        """The MURA folder name of this bone, e.g. ``XR_HAND``."""
        return f"XR_{self.value.upper()}"

    @classmethod
    def from_mura_part(cls, part: str) -> Bone:
        """Inverse of :attr:`mura_part` (``XR_HAND`` -> ``Bone.HAND``)."""
        if not part.upper().startswith("XR_"):
            raise ValueError(f"not a MURA body part folder: {part!r} (expected XR_<PART>)")
        return cls(part[3:].lower())

    @property
    def head(self) -> Head:
        """The bundle head that classifies this bone."""
        return Head(self.value)


class Head(str, Enum):
    """A trainable task of the model bundle: the router or one bone classifier."""

    ROUTER = "router"
    ELBOW = "elbow"
    FINGER = "finger"
    FOREARM = "forearm"
    HAND = "hand"
    HUMERUS = "humerus"
    SHOULDER = "shoulder"
    WRIST = "wrist"

    @property
    def bone(self) -> Bone | None:
        """The bone this head classifies, or ``None`` for the router."""
        return None if self is Head.ROUTER else Bone(self.value)

    @property
    def classes(self) -> tuple[str, ...]:
        """The head's output classes in softmax order: the seven bones for the router,
        normal/abnormal (:class:`Label`) for a bone head."""
        if self is Head.ROUTER:
            return tuple(bone.value for bone in Bone)
        return tuple(label.value for label in Label)


class Status(str, Enum):
    """Outcome of one image row: every file found gets exactly one of these."""

    OK = "ok"
    SKIPPED = "skipped"
    ERROR = "error"


class Reason(str, Enum):
    """Machine-readable reason for a ``skipped`` or ``error`` row."""

    NOT_DICOM = "not_dicom"
    DICOMDIR = "dicomdir"
    NON_IMAGE = "non_image"
    UNSUPPORTED_MODALITY = "unsupported_modality"
    NO_PIXEL_DATA = "no_pixel_data"
    READ_ERROR = "read_error"
    DECODE_ERROR = "decode_error"
    TRUNCATED = "truncated"
    TOO_LARGE = "too_large"
    UNSUPPORTED_TRANSFER_SYNTAX = "unsupported_transfer_syntax"
    TIMEOUT = "timeout"

    @property
    def status(self) -> Status:
        """Whether this reason means the file was skipped on purpose or failed."""
        return Status.SKIPPED if self in _SKIP_REASONS else Status.ERROR


_SKIP_REASONS = frozenset(
    {Reason.NOT_DICOM, Reason.DICOMDIR, Reason.NON_IMAGE, Reason.UNSUPPORTED_MODALITY}
)


class ImageFlag(str, Enum):
    """A note on an image row that does not change its status (``images.flags``)."""

    #: File without the 128-byte preamble and ``DICM`` magic (a legacy raw data set).
    NO_PREAMBLE = "no_preamble"
    #: Colour photometric interpretation reduced to luma.
    COLOUR_TO_GREY = "colour_to_grey"
    #: Multi-frame file of which only frame 0 was decoded.
    FIRST_FRAME_ONLY = "first_frame_only"
    #: Decoded smaller than Rows x Columns (JPEG 2000 at a reduced wavelet level).
    REDUCED_RESOLUTION = "reduced_resolution"
    #: The path is not UTF-8; the report shows it with ``\\xNN`` escapes.
    NON_UTF8_PATH = "non_utf8_path"
    #: (0018,0015) Body Part Examined names a bone other than the router's.
    BODYPART_MISMATCH = "bodypart_mismatch"
    #: The router's confidence is below the scan's ``low_confidence``.
    LOW_ROUTER_CONFIDENCE = "low_router_confidence"


class StudyFlag(str, Enum):
    """A note on a study row (``studies.flags``), in the order they are written."""

    #: The study's images were routed to different bones.
    MIXED_BONES = "mixed_bones"
    #: Some files of the study are ``error`` rows.
    HAS_ERRORS = "has_errors"
    #: An ok image without (0020,000D) Study Instance UID: its own study.
    MISSING_STUDY_UID = "missing_study_uid"
    #: The study's images carry more than one (0010,0020) Patient ID.
    MULTIPLE_PATIENT_IDS = "multiple_patient_ids"
    #: Carried up from an image row.
    BODYPART_MISMATCH = "bodypart_mismatch"
    #: Carried up from an image row.
    LOW_ROUTER_CONFIDENCE = "low_router_confidence"


class Label(str, Enum):
    """Per-bone classifier classes, in head output order."""

    NORMAL = "normal"
    ABNORMAL = "abnormal"

    @property
    def column(self) -> int:
        """The column of this class in a bone head's output (``Label.ABNORMAL.column`` is
        the positive class, whose probability every report and metric uses)."""
        return list(Label).index(self)


class Routing(str, Enum):
    """How the bone heads are combined for one image."""

    #: Only the router's argmax bone head runs; P(abnormal) is that head's.
    HARD = "hard"
    #: All seven heads run; P(abnormal) = sum_b P(b) * P(abnormal | b).
    SOFT = "soft"


class Backend(str, Enum):
    """What runs a bundle's networks in a scan (``batchfrac scan --backend``)."""

    #: ONNX Runtime when the bundle carries verified ONNX graphs and onnxruntime is
    #: installed, else Keras (the scan's log and run.json say why).
    AUTO = "auto"
    #: ONNX Runtime on the bundle's exported graphs; TensorFlow/Keras are not imported.
    ONNX = "onnx"
    #: Keras 3 (TensorFlow, JAX or PyTorch backend) on the bundle's weight files.
    KERAS = "keras"
