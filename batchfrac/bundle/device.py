"""What a bundle's networks run on, and the batch size that suits it.

A scan's default batch size depends on the device: on a CPU small batches are as fast
per image as large ones (ONNX Runtime's convolutions work image by image; measured on
2 cores, see the README's Performance section) and a small last batch pads less, while
an accelerator needs large batches to be kept busy. :func:`accelerator_batch_size`
sizes them to the memory the accelerator has free. Nothing here imports a framework.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

#: Default batch on a CPU with ONNX Runtime, and with Keras (whose compiled graphs are
#: traced once per batch size, so every call is padded to this size).
CPU_BATCH_ONNX = 8
CPU_BATCH_KERAS = 32
#: Bytes of activations one 224 px image needs in flight through B0 in float32 (the
#: largest pair of consecutive tensors, 112 x 112 x 96 x 4 B each, with the runtime's
#: workspace), scaled by the pixel count for other sizes.
ACTIVATION_BYTES_224 = 12 << 20
#: Share of the accelerator's free memory a batch may use, and the batch bounds.
ACCELERATOR_MEMORY_SHARE = 0.25
ACCELERATOR_BATCH_MIN, ACCELERATOR_BATCH_MAX = 32, 512
#: Without a memory figure: a batch that fits any CUDA card of 4 GB at 224 px.
ACCELERATOR_BATCH_DEFAULT = 128


@dataclass(frozen=True)
class BackendInfo:
    """Which backend runs a bundle's networks, on what, and how it was chosen.

    ``name`` is ``onnx`` or ``keras``; ``note`` says why ``auto`` fell back to Keras;
    ``device`` is ``cpu``, ``gpu`` (or ``tpu``, Keras on JAX); ``providers`` are
    ONNX Runtime's execution providers in use (or the Keras backend); ``threads`` the
    intra-op threads (``None``: the runtime's default); ``graphs_sha256`` the ONNX files in use;
    ``fixed_batch`` whether every call must have the same batch size (compiled graphs
    that would be traced again for a new size) and ``batch_size`` the size that suits
    the device.
    """

    name: str
    device: str
    providers: tuple[str, ...]
    batch_size: int
    fixed_batch: bool
    threads: int | None = None
    note: str | None = None
    graphs_sha256: dict[str, str] = field(default_factory=dict)


def accelerator_batch_size(free_bytes: int | None, image_size: int) -> int:
    """A batch size for an accelerator with ``free_bytes`` of free memory (``None``:
    unknown): a power of two using at most :data:`ACCELERATOR_MEMORY_SHARE` of it."""
    if free_bytes is None:
        return ACCELERATOR_BATCH_DEFAULT
    per_image = ACTIVATION_BYTES_224 * (image_size / 224) ** 2
    fits = int(free_bytes * ACCELERATOR_MEMORY_SHARE / per_image)
    power = 1 << max(0, fits.bit_length() - 1)
    return max(ACCELERATOR_BATCH_MIN, min(ACCELERATOR_BATCH_MAX, power))


def parse_nvidia_smi_free(text: str) -> int | None:
    """Free bytes of the first GPU in ``nvidia-smi --query-gpu=memory.free
    --format=csv,noheader,nounits`` output (MiB per line), ``None`` if unreadable."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    try:
        return int(float(first)) << 20
    except ValueError:
        return None


def gpu_free_bytes() -> int | None:
    """Free memory of the first NVIDIA GPU as its driver reports it, or ``None``."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        done = subprocess.run(
            [smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi_free(done.stdout)


def keras_info(image_size: int, *, note: str | None = None) -> BackendInfo:
    """The Keras backend as a scan plans it, before Keras is imported (its import takes
    seconds and happens while the decoding workers start): an NVIDIA GPU that its driver
    reports gets accelerator-sized batches. :meth:`BundleRuntime.info` is the record
    once the networks are built."""
    free = gpu_free_bytes()
    gpu = free is not None
    return BackendInfo(
        name="keras",
        device="gpu" if gpu else "cpu",
        providers=(),
        batch_size=accelerator_batch_size(free, image_size) if gpu else CPU_BATCH_KERAS,
        fixed_batch=True,
        note=note,
    )
