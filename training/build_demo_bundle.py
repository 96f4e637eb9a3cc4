"""Rebuild the shipped DEMO model bundle from synthetic radiographs, deterministically.

    python training/build_demo_bundle.py --work /tmp/demo [--out batchfrac/demo_bundle]

Steps (each is the public CLI a user would run, so this script is also a worked example):

1. ``batchfrac synth WORK/mura --layout mura --studies 840 --seed 2026``: a MURA-v1.1 tree of
   synthetic radiographs (120 studies per bone, ~40 % abnormal, patients split train/valid).
2. ``batchfrac train --bone router --weights none --demo``: no ImageNet weights exist on an
   air-gapped build machine, so the router is trained end to end from random weights and its
   trunk becomes the bundle's one shared, frozen trunk (recorded as ``router_end_to_end``).
3. ``batchfrac train --bone <bone>`` for the seven bones: the paper's transfer recipe on that
   frozen trunk (last 20 B0 layers + classifier trainable, BatchNormalization frozen, Adam 1e-4).
4. ``batchfrac synth WORK/heldout --layout mura --studies 700 --seed 2027`` and ``batchfrac
   evaluate --data WORK/heldout --split train``: a separate synthetic tree, drawn from another
   seed, that training never saw (about 90 studies per bone, enough for a stable AUROC; the
   training tree's own valid split has only ~12 studies per bone). The table goes in README.md.

The demo is trained at the paper's 224 px; it rebuilds on a 2-core CPU in about an hour.
Same seeds, same machine, same bundle; across CPUs the float arithmetic (oneDNN) may differ in
the last bits.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

BONES = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")
SYNTH = ("--layout", "mura", "--studies", "840", "--seed", "2026")
HELD_OUT = ("--layout", "mura", "--studies", "700", "--seed", "2027")
IMAGE_SIZE = "224"
ROUTER_EPOCHS = "20"
BONE_EPOCHS = "15"


def _batchfrac(*args: str) -> None:
    command = [sys.executable, "-m", "batchfrac", *args]
    print("+ batchfrac", " ".join(args), flush=True)  # noqa: T201 - a build script's log
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (recreated)")
    parser.add_argument("--out", type=Path, default=Path("batchfrac/demo_bundle"))
    parser.add_argument("--skip-synth", action="store_true", help="reuse WORK/mura")
    args = parser.parse_args()

    mura = args.work / "mura"
    held_out = args.work / "heldout"
    bundle = args.work / "bundle"
    if not args.skip_synth:
        shutil.rmtree(args.work, ignore_errors=True)
        _batchfrac("synth", str(mura), *SYNTH)
        _batchfrac("synth", str(held_out), *HELD_OUT)
    shutil.rmtree(bundle, ignore_errors=True)
    common = ("--data", str(mura), "--bundle", str(bundle), "--seed", "0")
    _batchfrac(
        "train", "--bone", "router", *common, "--weights", "none", "--demo",
        "--image-size", IMAGE_SIZE, "--epochs", ROUTER_EPOCHS,
    )  # fmt: skip
    for bone in BONES:
        _batchfrac("train", "--bone", bone, *common, "--epochs", BONE_EPOCHS)
    _batchfrac(
        "evaluate", "--data", str(held_out), "--bundle", str(bundle), "--split", "train",
        "--out", str(args.work / "evaluation"), "--plots",
    )  # fmt: skip
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(bundle, args.out, ignore=shutil.ignore_patterns(".lock"))
    _batchfrac("models", "info", str(args.out))


if __name__ == "__main__":
    main()
