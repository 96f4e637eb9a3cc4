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
    #: Rows or Columns below the smallest side a radiograph can be scored at.
    TOO_SMALL = "too_small"
    #: A directory of the archive that cannot be listed (its files are unaccounted for).
    UNREADABLE_DIRECTORY = "unreadable_directory"
    #: A symbolic link whose target does not exist (or loops).
    DANGLING_LINK = "dangling_link"
    #: A symbolic link that leads out of the archive (never followed).
    OUTSIDE_ARCHIVE = "outside_archive"
    #: A FIFO, socket or device: never opened.
    NOT_REGULAR_FILE = "not_regular_file"
    #: Another name of a file already reported (a link or hard link to it).
    DUPLICATE = "duplicate"

    @property
    def status(self) -> Status:
        """Whether this reason means the file was skipped on purpose or failed."""
        return Status.SKIPPED if self in _SKIP_REASONS else Status.ERROR


_SKIP_REASONS = frozenset(
    {
        Reason.NOT_DICOM,
        Reason.DICOMDIR,
        Reason.NON_IMAGE,
        Reason.UNSUPPORTED_MODALITY,
        Reason.TOO_SMALL,
        Reason.OUTSIDE_ARCHIVE,
        Reason.NOT_REGULAR_FILE,
        Reason.DUPLICATE,
    }
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
    #: An earlier row (by path) has the same SOP Instance UID and frame: this copy is not
    #: counted in its study's mean.
    DUPLICATE_INSTANCE = "duplicate_instance"
    #: Pixel Data holds more bytes than Number of Frames needs; the surplus was ignored.
    SURPLUS_PIXEL_DATA = "surplus_pixel_data"


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
    #: The study holds the same SOP Instance UID and frame more than once (counted once).
    DUPLICATE_INSTANCES = "duplicate_instances"


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


class CamScore(str, Enum):
    """What Grad-CAM differentiates (:mod:`batchfrac.bundle.gradcam`): a function of the
    head's pre-softmax outputs ``z``.

    ``log_odds`` (default): ``z_c - logsumexp(z_j, j != c)``, the logit of ``p_c``
    (two classes: ``z_abnormal - z_normal``). A softmax head learns only differences of
    its logits (adding one number to every logit changes nothing), and in training the
    two columns of the Dense kernel move by opposite amounts: ``z_c`` alone keeps a part
    of the random initial kernel that no training signal shaped; the difference carries
    the learnt evidence twice. Unlike ``p_c`` it does not saturate.
    ``logit``: ``z_c``, the pre-softmax class score of the Grad-CAM paper; for a GAP ->
    Dense head its map is the CAM of Zhou et al. (ReLU of ``sum_k W[k, c] A_k``).
    ``probability``: ``p_c``; its gradient shrinks by ``p_c (1 - p_c)``, so for a
    confident image it underflows and the map is zero: kept for comparison only.
    """

    LOG_ODDS = "log_odds"
    LOGIT = "logit"
    PROBABILITY = "probability"


class Backend(str, Enum):
    """What runs a bundle's networks in a scan (``batchfrac scan --backend``)."""

    #: ONNX Runtime when the bundle carries verified ONNX graphs and onnxruntime is
    #: installed, else Keras (the scan's log and run.json say why).
    AUTO = "auto"
    #: ONNX Runtime on the bundle's exported graphs; TensorFlow/Keras are not imported.
    ONNX = "onnx"
    #: Keras 3 (TensorFlow, JAX or PyTorch backend) on the bundle's weight files.
    KERAS = "keras"


class InferOn(str, Enum):
    """Where a scan runs the networks (``batchfrac scan --infer-on``)."""

    #: On the scan's own process, fed by the decoding workers (the default).
    DRIVER = "driver"
    #: On the ``--scheduler`` cluster's workers: each task decodes and infers a whole
    #: chunk and sends back report rows only.
    WORKERS = "workers"
