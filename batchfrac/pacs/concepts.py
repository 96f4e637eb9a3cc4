"""Coded concepts our DICOM objects use: standard codes where one fits, local ones else.

Local codes use the private coding scheme ``99BATCHFRAC`` (PS3.3 8.2: designators starting
with ``99`` are for local use), identified in each object's (0008,0110) *Coding Scheme
Identification Sequence*.
"""

from __future__ import annotations

from pydicom.sr.coding import Code

from ..enums import Bone, Label

LOCAL_SCHEME = "99BATCHFRAC"
LOCAL_SCHEME_NAME = "batchfrac local codes"

ABNORMAL_PROBABILITY = Code("ABNPROB", LOCAL_SCHEME, "Probability of abnormality")
"""P(abnormal) of the bone head the image was routed to (or of the study: their mean)."""
ROUTER_CONFIDENCE = Code("BONECONF", LOCAL_SCHEME, "Body part classifier confidence")
"""The router head's probability for the bone it chose."""

NORMALITY = Code("121402", "DCM", "Normality")
THRESHOLD = Code("122411", "DCM", "Threshold Value")
NO_UNITS = Code("1", "UCUM", "no units")
MEAN = Code("373098007", "SCT", "Mean")
PLAIN_RADIOGRAPHY = Code("168537006", "SCT", "Plain radiography")
FOR_PHYSICIAN_REVIEW = Code("128201", "DCM", "For Physician Review")
"""CID 7010 Key Object Selection Document Title: what a worklist shows for a flagged study."""

FINDING = {
    Label.NORMAL: Code("17621005", "SCT", "Normal"),
    Label.ABNORMAL: Code("263654008", "SCT", "Abnormal"),
}
BONE_SITE = {
    Bone.ELBOW: Code("16953009", "SCT", "Elbow joint"),
    Bone.FINGER: Code("7569003", "SCT", "Finger"),
    Bone.FOREARM: Code("14975008", "SCT", "Forearm"),
    Bone.HAND: Code("85562004", "SCT", "Hand"),
    Bone.HUMERUS: Code("85050009", "SCT", "Humerus"),
    Bone.SHOULDER: Code("16982005", "SCT", "Shoulder"),
    Bone.WRIST: Code("74670003", "SCT", "Wrist joint"),
}
"""(0008,2218)-style anatomy codes for the router's seven classes (SNOMED CT)."""


def finding_for(probability: float, threshold: float) -> Label:
    """The call at ``threshold``: abnormal when the probability is greater (MURA's rule)."""
    return Label.ABNORMAL if probability > threshold else Label.NORMAL
