"""Devices and batch sizes: CPU defaults, accelerator-sized batches, provider order."""

from __future__ import annotations

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
