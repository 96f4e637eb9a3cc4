"""Published reference numbers shown beside ``batchfrac evaluate``'s results on MURA.

Two sources:

- Patel et al., "Deep Learning For Abnormalities Detection in Musculoskeletal
  Radiographs" (the method batchfrac implements): per-bone accuracy and F1 on MURA's
  ``valid`` split. Only the averages over the seven bones (accuracy 0.757, F1 0.739)
  are known to us reliably; the per-bone values are left ``None`` rather than guessed.
  Fill them in from the paper's table when it is at hand.
- Rajpurkar et al. 2017, "MURA: Large Dataset for Abnormality Detection in
  Musculoskeletal Radiographs" (arXiv:1712.06957), Table 1: Cohen's kappa of the
  DenseNet-169 baseline against the radiologists' gold standard, per study type.
  These values are quoted from memory of that table. The overall 0.705 is the one given
  in the project's design notes; wrist 0.931, hand 0.851 and shoulder 0.729 are also
  quoted as the MURA leaderboard baseline in "X-Ray bone abnormalities detection using
  MURA dataset" (arXiv:2008.03356, abstract); the rest agree with the paper's text
  (model comparable to the best radiologist on finger and wrist, lower elsewhere).
  Re-check them against the paper before citing them in a publication. Note they were
  measured on MURA's hidden *test* set (207 studies), not on the public ``valid`` split,
  so they are a guide, not a target.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..enums import Bone

PATEL_AVERAGE_ACCURACY = 0.757
PATEL_AVERAGE_F1 = 0.739

# Per-bone values of Patel et al. are not known exactly: None, not invented numbers.
PATEL_ACCURACY: dict[Bone, float | None] = {bone: None for bone in Bone}
PATEL_F1: dict[Bone, float | None] = {bone: None for bone in Bone}

MURA_BASELINE_KAPPA: dict[Bone, float] = {
    Bone.ELBOW: 0.710,
    Bone.FINGER: 0.389,
    Bone.FOREARM: 0.737,
    Bone.HAND: 0.851,
    Bone.HUMERUS: 0.600,
    Bone.SHOULDER: 0.729,
    Bone.WRIST: 0.931,
}
MURA_BASELINE_KAPPA_OVERALL = 0.705

# Size of one full EfficientNet-B0 classifier in the paper (8 models: 207 MB).
PATEL_MODEL_MB = 25.9


@dataclass(frozen=True, slots=True)
class Reference:
    """Published numbers for one row of the evaluation table (``None`` = not known)."""

    paper_accuracy: float | None
    paper_f1: float | None
    mura_kappa: float | None

    def as_dict(self) -> dict[str, float | None]:
        """Column name -> value, for the CSV/JSON outputs."""
        return {
            "paper_accuracy": self.paper_accuracy,
            "paper_f1": self.paper_f1,
            "mura_kappa": self.mura_kappa,
        }


REFERENCE_COLUMNS: tuple[str, ...] = ("paper_accuracy", "paper_f1", "mura_kappa")


def reference(bone: Bone | None) -> Reference:
    """The published numbers of one bone, or of the average/overall row for ``None``.

    The average row carries Patel et al.'s averages and MURA's overall kappa.
    """
    if bone is None:
        return Reference(PATEL_AVERAGE_ACCURACY, PATEL_AVERAGE_F1, MURA_BASELINE_KAPPA_OVERALL)
    return Reference(PATEL_ACCURACY[bone], PATEL_F1[bone], MURA_BASELINE_KAPPA[bone])
