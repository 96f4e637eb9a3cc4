"""Rebuild the shipped DEMO model bundle from synthetic radiographs, deterministically.

    python training/build_demo_bundle.py --work /tmp/demo [--out batchfrac/demo_bundle]

Steps (each is the public CLI a user would run, so this script is also a worked example):

1. ``batchfrac synth WORK/mura --layout mura --studies 2520 --seed 2026``: a MURA-v1.1 tree
   of synthetic radiographs (360 studies per bone, ~40 % abnormal, patients split
   train/valid).
2. ``batchfrac train --bone router --weights none --demo``: no ImageNet weights exist on an
   air-gapped build machine, so the router is trained end to end from random weights (with
   the auxiliary abnormality task) and its trunk becomes the bundle's one shared, frozen
   trunk (recorded as ``router_end_to_end``).
3. ``batchfrac train --bone <bone>`` for the seven bones: the paper's transfer recipe on that
   frozen trunk (last 20 B0 layers + classifier trainable, BatchNormalization frozen, Adam
   1e-4). ``--jobs N`` trains N bones at once (worth it on a GPU; on a CPU they only share
   the cores). Each adds its head to the bundle atomically, under the bundle's lock.
4. ``batchfrac synth WORK/heldout --layout mura --studies 700 --seed 2027`` and ``batchfrac
   evaluate --data WORK/heldout --split train``: a separate synthetic tree, drawn from another
   seed, that training never saw (about 90 studies per bone, enough for a stable AUROC; the
   training tree's own valid split has only ~36 studies per bone). The table goes in
   README.md.

The demo is trained at the paper's 224 px on a 2-core CPU with the TensorFlow backend, in
about 1 h 25 min (the end-to-end router takes two thirds of it; each head records the
backend and device under ``compute`` in bundle.json). The router stops at 10 epochs for
that reason: on a GPU (~20 s an epoch on an H100), ``--router-epochs 40`` lets early
stopping decide (its joint validation loss was still falling at epoch 20 there; GPU
kernels are not bit-reproducible unless XLA is told to be). On a CPU: same seeds, same
machine and backend, same bundle; across devices and backends the float arithmetic
differs in the last bits, so a rebuild elsewhere gives close, not identical, weights and
metrics.

``--studies``, ``--router-epochs``, ``--bone-epochs`` and ``--image-size`` override the
recipe above for a quick look (``--studies 70 --image-size 64 --router-epochs 1
--bone-epochs 1``); the shipped bundle uses the defaults.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BONES = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")
STUDIES = 2520
SEED = 2026
HELD_OUT_STUDIES = 700
HELD_OUT_SEED = 2027
IMAGE_SIZE = 224
ROUTER_EPOCHS = 10
BONE_EPOCHS = 30


def _batchfrac(*args: str, log: Path | None = None) -> None:
    """Run one batchfrac command; with ``log``, its output goes to that file instead."""
    command = [sys.executable, "-m", "batchfrac", *args]
    where = f"  > {log}" if log else ""
    print("+ batchfrac", " ".join(args) + where, flush=True)  # noqa: T201 - a build log
    if log is None:
        subprocess.run(command, check=True)
        return
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        print("\n".join(tail), flush=True)  # noqa: T201
        raise subprocess.CalledProcessError(done.returncode, command)


def _synth(root: Path, studies: int, seed: int) -> None:
    layout = ("--layout", "mura", "--studies", str(studies), "--seed", str(seed))
    # every core draws; the tree is the same bytes whatever their number
    _batchfrac("synth", str(root), *layout, "--jobs", str(os.cpu_count() or 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (recreated)")
    parser.add_argument("--out", type=Path, default=Path("batchfrac/demo_bundle"))
    parser.add_argument("--skip-synth", action="store_true", help="reuse WORK/mura")
    parser.add_argument(
        "--no-evaluate", action="store_true", help="skip step 4 (run it later, elsewhere)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="bone heads trained at once")
    parser.add_argument("--studies", type=int, default=STUDIES)
    parser.add_argument("--router-epochs", type=int, default=ROUTER_EPOCHS)
    parser.add_argument("--bone-epochs", type=int, default=BONE_EPOCHS)
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    mura = args.work / "mura"
    held_out = args.work / "heldout"
    bundle = args.work / "bundle"
    if not args.skip_synth:
        shutil.rmtree(args.work, ignore_errors=True)
        _synth(mura, args.studies, SEED)
    shutil.rmtree(bundle, ignore_errors=True)
    common = ("--data", str(mura), "--bundle", str(bundle), "--seed", "0")
    _batchfrac(
        "train", "--bone", "router", *common, "--weights", "none", "--demo",
        "--image-size", str(args.image_size), "--epochs", str(args.router_epochs),
    )  # fmt: skip
    if args.jobs > 1:
        # Several JAX processes share one GPU: each takes memory as it needs it.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    logs = args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def bone_head(bone: str) -> None:
        log = logs / f"{bone}.log" if args.jobs > 1 else None  # interleaved output is unreadable
        _batchfrac("train", "--bone", bone, *common, "--epochs", str(args.bone_epochs), log=log)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(bone_head, BONES))  # re-raises the first failure
    if not args.no_evaluate:
        if not held_out.exists() or not args.skip_synth:
            _synth(held_out, HELD_OUT_STUDIES, HELD_OUT_SEED)
        _batchfrac(
            "evaluate", "--data", str(held_out), "--bundle", str(bundle), "--split", "train",
            "--out", str(args.work / "evaluation"), "--plots",
        )  # fmt: skip
    shutil.rmtree(args.out, ignore_errors=True)
    shutil.copytree(bundle, args.out, ignore=shutil.ignore_patterns(".lock"))
    _batchfrac("models", "info", str(args.out))


if __name__ == "__main__":
    main()
