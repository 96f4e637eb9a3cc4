"""Devices and batch sizes: CPU defaults, accelerator-sized batches, provider order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchfrac.bundle import device
from batchfrac.bundle.device import (
    ACCELERATOR_BATCH_DEFAULT,
    ACCELERATOR_BATCH_MAX,
    ACCELERATOR_BATCH_MIN,
    CPU_BATCH_KERAS,
    accelerator_batch_size,
    keras_info,
    parse_nvidia_smi_free,
)

GIB = 1 << 30


class TestAcceleratorBatchSize:
    def test_unknown_memory_gets_the_default(self) -> None:
        assert accelerator_batch_size(None, 224) == ACCELERATOR_BATCH_DEFAULT

    def test_a_power_of_two_within_a_quarter_of_free_memory(self) -> None:
        size = accelerator_batch_size(8 * GIB, 224)  # 2 GiB / 12 MiB = 170 images
        assert size == 128
        assert size * device.ACTIVATION_BYTES_224 <= 8 * GIB * device.ACCELERATOR_MEMORY_SHARE

    def test_larger_images_get_smaller_batches(self) -> None:
        assert accelerator_batch_size(8 * GIB, 448) == 32
        assert accelerator_batch_size(8 * GIB, 224) > accelerator_batch_size(8 * GIB, 320)

    def test_bounds(self) -> None:
        assert accelerator_batch_size(140 * GIB, 224) == ACCELERATOR_BATCH_MAX
        assert accelerator_batch_size(GIB // 4, 224) == ACCELERATOR_BATCH_MIN


class TestNvidiaSmi:
    def test_first_gpu_in_mib(self) -> None:
        assert parse_nvidia_smi_free("81050\n40000\n") == 81050 << 20

    @pytest.mark.parametrize("text", ["", "[N/A]\n", "No devices were found"])
    def test_unreadable_output_is_unknown(self, text: str) -> None:
        assert parse_nvidia_smi_free(text) is None


def fake_nvidia_smi(folder: Path, body: str) -> Path:
    """An executable ``nvidia-smi`` in ``folder`` running ``body`` (sh); it writes its
    arguments to ``folder/args``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" > "{folder}/args"\n{body}\n')
    script.chmod(0o755)
    return folder


class TestNvidiaSmiOnPath:
    """:func:`device.gpu_free_bytes` runs whatever ``nvidia-smi`` PATH finds."""

    def test_free_memory_of_the_first_gpu(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        folder = fake_nvidia_smi(tmp_path / "bin", "printf '143000\\n143771\\n'")
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        assert device.gpu_free_bytes() == 143000 << 20
        args = (folder / "args").read_text().split()
        assert "--query-gpu=memory.free" in args and "--format=csv,noheader,nounits" in args

    @pytest.mark.parametrize(
        "body",
        ["echo 'NVIDIA-SMI has failed because it couldn't communicate with the driver'; exit 9",
         "echo 'No devices were found'", "kill -SEGV $$"],
        ids=["driver-gone", "no-devices", "crash"],
    )  # fmt: skip
    def test_a_failing_driver_is_no_gpu(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
    ) -> None:
        folder = fake_nvidia_smi(tmp_path / "bin", body)
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        assert device.gpu_free_bytes() is None

    def test_no_nvidia_smi_is_no_gpu(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))
        assert device.gpu_free_bytes() is None

    def test_a_keras_scan_on_a_gpu_host_plans_accelerator_batches(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_bundle_path: Path
    ) -> None:
        from batchfrac.bundle.format import ModelBundle

        folder = fake_nvidia_smi(tmp_path / "bin", "echo 143000")
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        bundle = ModelBundle.load(demo_bundle_path)
        planned = bundle.use_backend("keras")  # planned before Keras is imported
        assert (planned.device, planned.batch_size, planned.fixed_batch) == (
            "gpu", ACCELERATOR_BATCH_MAX, True
        )  # fmt: skip
        assert bundle.backend.batch_size == ACCELERATOR_BATCH_MAX


class TestKerasPlan:
    def test_cpu_host_gets_the_keras_cpu_batch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(device, "gpu_free_bytes", lambda: None)
        info = keras_info(224, note="why")
        assert (info.name, info.device, info.batch_size, info.note) == (
            "keras", "cpu", CPU_BATCH_KERAS, "why"
        )  # fmt: skip
        assert info.fixed_batch

    def test_gpu_host_gets_batches_sized_to_its_memory(self, monkeypatch: pytest.MonkeyPatch):
        monkeypatch.setattr(device, "gpu_free_bytes", lambda: 80 * GIB)
        info = keras_info(224)
        assert (info.device, info.batch_size) == ("gpu", accelerator_batch_size(80 * GIB, 224))


class TestOnnxProviders:
    def test_an_installed_gpu_provider_comes_first(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import onnxruntime

        from batchfrac.bundle.onnx_runtime import default_providers

        available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available)
        assert default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: available[2:])
        assert default_providers() == ["CPUExecutionProvider"]
