"""Sample records: the split by patient and the training targets."""

from __future__ import annotations

import numpy as np
import pytest

from batchfrac.datasets.mura import read_mura
from batchfrac.datasets.samples import (
    DatasetError,
    Sample,
    class_counts,
    head_targets,
    split_by_patient,
)
from batchfrac.enums import Bone, Head, Label


def _samples(n_patients: int, seed: int = 0) -> list[Sample]:
    """Patients with 1-5 images each, a third of them abnormal."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_patients):
        label = Label.ABNORMAL if p % 3 == 0 else Label.NORMAL
        for i in range(int(rng.integers(1, 6))):
            rel = f"train/XR_HAND/patient{p:05d}/study1/image{i}.png"
            out.append(Sample(rel, rel, Bone.HAND, label, f"patient{p:05d}", rel[:-11]))
    return out


class TestSplitByPatient:
    def test_no_patient_on_both_sides(self):
        train, val = split_by_patient(_samples(100), Head.HAND, 0.2, seed=1)
        assert not {s.patient for s in train} & {s.patient for s in val}
        assert len(train) + len(val) == len(_samples(100))

    def test_about_the_requested_fraction(self):
        samples = _samples(200)
        train, val = split_by_patient(samples, Head.HAND, 0.2, seed=3)
        patients = len({s.patient for s in samples})
        assert len({s.patient for s in val}) / patients == pytest.approx(0.2, abs=0.02)
        assert len(val) / len(samples) == pytest.approx(0.2, abs=0.06)

    def test_both_classes_are_held_out(self):
        _, val = split_by_patient(_samples(30), Head.HAND, 0.2, seed=0)
        assert {s.label for s in val} == {Label.NORMAL, Label.ABNORMAL}

    def test_seeded(self):
        samples = _samples(60)
        first = split_by_patient(samples, Head.HAND, 0.2, seed=7)
        assert split_by_patient(samples, Head.HAND, 0.2, seed=7) == first
        assert split_by_patient(samples, Head.HAND, 0.2, seed=8) != first

    def test_router_split_of_a_mura_tree(self, mura_parent):
        samples = read_mura(mura_parent, "train").samples
        train, val = split_by_patient(samples, Head.ROUTER, 0.2, seed=0)
        assert not {s.patient for s in train} & {s.patient for s in val}
        assert {s.bone for s in train} == set(Bone)
        patients = len({s.patient for s in samples})
        # One patient at least per bone stratum: about a fifth, a little more on tiny data.
        assert 0.15 <= len({s.patient for s in val}) / patients <= 0.35

    def test_one_patient_cannot_be_split(self):
        with pytest.raises(DatasetError, match="cannot hold out"):
            split_by_patient(_samples(1), Head.HAND, 0.2)

    @pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
    def test_fraction_out_of_range(self, fraction):
        with pytest.raises(DatasetError, match="between 0 and 1"):
            split_by_patient(_samples(10), Head.HAND, fraction)


class TestTargets:
    def test_router_targets_are_bones_in_order(self, mura_parent):
        samples = read_mura(mura_parent, "train").samples
        targets = head_targets(samples, Head.ROUTER)
        assert [Head.ROUTER.classes[t] for t in targets] == [s.bone.value for s in samples]

    def test_bone_targets_are_labels(self):
        samples = _samples(9)
        targets = head_targets(samples, Head.HAND)
        assert Head.HAND.classes == ("normal", "abnormal")
        assert list(targets) == [int(s.label is Label.ABNORMAL) for s in samples]
        counts = class_counts(samples, Head.HAND)
        assert counts == {"normal": int((targets == 0).sum()), "abnormal": int(targets.sum())}


# --------------------------------------------------------------------------- DICOM
