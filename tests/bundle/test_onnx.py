"""ONNX graphs of a bundle: equal to its Keras networks, exported with it, checked at load."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from batchfrac.bundle.format import BUNDLE_FILE, ModelBundle, compute_bundle_id, read_meta
from batchfrac.bundle.onnx_export import (
    TOLERANCE,
    check_images,
    export_head,
    export_trunk,
    head_graph,
    trunk_graph,
)
from batchfrac.bundle.weightfile import read_weight_file, sha256_bytes
from batchfrac.enums import Backend, Head, Routing
from batchfrac.errors import BundleError
from batchfrac.scan.inference import BatchPredictor

FEATURE_SIZE_224 = 7


def _edit_meta(path: Path, edit) -> None:
    meta = json.loads((path / BUNDLE_FILE).read_text())
    edit(meta)
    (path / BUNDLE_FILE).write_text(json.dumps(meta))


@pytest.fixture()
def demo_copy(tmp_path: Path, demo_bundle_path: Path) -> Path:
    return Path(shutil.copytree(demo_bundle_path, tmp_path / "demo"))


class TestShippedGraphs:
    def test_demo_graphs_are_what_the_exporter_makes_of_its_weight_files(
        self, demo_bundle_path: Path
    ) -> None:
        meta = read_meta(demo_bundle_path)
        section = meta["onnx"]
        trunk = read_weight_file(demo_bundle_path / meta["trunk"]["file"], meta["trunk"]["sha256"])
        assert section["trunk"]["source_sha256"] == meta["trunk"]["sha256"]
        assert sha256_bytes(trunk_graph(trunk, meta["image_size"])) == section["trunk"]["sha256"]
        assert sorted(section["heads"]) == sorted(meta["heads"])
        for name, head in meta["heads"].items():
            record = section["heads"][name]
            arrays = read_weight_file(demo_bundle_path / head["file"], head["sha256"])
            assert record["source_sha256"] == head["sha256"]
            assert sha256_bytes(head_graph(arrays, FEATURE_SIZE_224, name)) == record["sha256"]
            assert record["max_abs_diff"] <= TOLERANCE
            shipped = (demo_bundle_path / record["file"]).read_bytes()
            assert sha256_bytes(shipped) == record["sha256"]

    def test_graphs_are_not_part_of_the_bundle_id(self, demo_bundle_path: Path) -> None:
        meta = read_meta(demo_bundle_path)
        without = {k: v for k, v in meta.items() if k != "onnx"}
        assert compute_bundle_id(without) == compute_bundle_id(meta) == meta["bundle_id"]


class TestBackendChoice:
    def test_auto_runs_the_demo_bundle_on_onnx_without_padding(self, demo_copy: Path) -> None:
        bundle = ModelBundle.load(demo_copy)
        info = bundle.use_backend(Backend.AUTO, threads=1)
        assert (info.name, info.device, info.note, info.threads) == ("onnx", "cpu", None, 1)
        assert info.providers[-1] == "CPUExecutionProvider"
        assert not bundle.fixed_batch and not info.fixed_batch
        assert len(info.graphs_sha256) == 9

    def test_a_graph_of_other_weights_means_keras_and_says_why(self, demo_copy: Path) -> None:
        _edit_meta(demo_copy, lambda m: m["onnx"]["heads"]["hand"].update(source_sha256="0" * 64))
        bundle = ModelBundle.load(demo_copy)
        info = bundle.use_backend(Backend.AUTO)
        assert info.name == "keras" and bundle.fixed_batch
        assert "head hand was exported from other weights" in (info.note or "")
        with pytest.raises(BundleError, match="head hand"):
            ModelBundle.load(demo_copy).use_backend(Backend.ONNX)

    def test_a_bundle_without_graphs_runs_on_keras(self, demo_copy: Path) -> None:
        _edit_meta(demo_copy, lambda m: m.pop("onnx"))
        info = ModelBundle.load(demo_copy).use_backend(Backend.AUTO)
        assert info.name == "keras"
        assert "export-onnx" in (info.note or "")

    def test_without_onnxruntime_auto_says_so(
        self, demo_copy: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
        )
        info = ModelBundle.load(demo_copy).use_backend(Backend.AUTO)
        assert (info.name, info.note) == ("keras", "onnxruntime is not installed")

    def test_an_altered_graph_file_is_refused(self, demo_copy: Path) -> None:
        record = read_meta(demo_copy)["onnx"]["trunk"]
        graph = demo_copy / record["file"]
        data = bytearray(graph.read_bytes())
        data[-100] ^= 0xFF
        graph.write_bytes(bytes(data))
        with pytest.raises(BundleError, match="sha256"):
            ModelBundle.load(demo_copy).use_backend(Backend.ONNX)


def _real_images(sample_archive: Path, spec, n: int = 6) -> np.ndarray:
    from batchfrac.enums import Status
    from batchfrac.ingest.entry import IngestConfig, ingest_file

    config = IngestConfig(spec=spec)
    out = []
    for path in sorted(p for p in sample_archive.rglob("IM*") if p.is_file()):
        out += [r.pixels for r in ingest_file(path, config) if r.status is Status.OK]
        if len(out) >= n:
            break
    return np.stack(out[:n]).astype(np.float32)


@pytest.fixture(scope="module")
def demo_on_onnx(demo_bundle_path: Path) -> ModelBundle:
    bundle = ModelBundle.load(demo_bundle_path)
    bundle.use_backend(Backend.ONNX)
    return bundle


@pytest.fixture(scope="module")
def demo_inputs(demo_on_onnx: ModelBundle, sample_archive: Path) -> dict[str, np.ndarray]:
    real = _real_images(sample_archive, demo_on_onnx.spec)
    return {"random": check_images(demo_on_onnx.image_size, n=4, seed=7), "real": real}


class TestDemoBundleEqualsKeras:
    def test_trunk_and_every_head(
        self, demo_on_keras: ModelBundle, demo_on_onnx: ModelBundle, demo_inputs
    ) -> None:
        for kind, x in demo_inputs.items():
            keras_features = demo_on_keras.trunk_features(x)
            onnx_features = demo_on_onnx.trunk_features(x)
            for ours, theirs in zip(onnx_features, keras_features, strict=True):
                scale = max(1.0, float(np.abs(theirs).max()))
                np.testing.assert_allclose(
                    ours.transpose(0, 2, 3, 1), theirs, atol=TOLERANCE * scale, err_msg=kind
                )
            for head in Head:
                np.testing.assert_allclose(
                    demo_on_onnx.head_probs(head, onnx_features),
                    demo_on_keras.head_probs(head, keras_features),
                    atol=TOLERANCE,
                    err_msg=f"{kind} {head.value}",
                )

    @pytest.mark.parametrize("routing", [Routing.HARD, Routing.SOFT])
    def test_batch_predictor_outputs(
        self, demo_on_keras: ModelBundle, demo_on_onnx: ModelBundle, demo_inputs, routing
    ) -> None:
        x = np.concatenate([demo_inputs["real"], demo_inputs["random"]])
        ours = BatchPredictor(demo_on_onnx, batch_size=4, routing=routing)
        theirs = BatchPredictor(demo_on_keras, batch_size=4, routing=routing)
        got, expected = ours.predict(x), theirs.predict(x)
        assert [p.bone for p in got] == [p.bone for p in expected]
        for a, b in zip(got, expected, strict=True):
            assert a.bone_confidence == pytest.approx(b.bone_confidence, abs=TOLERANCE)
            assert a.abnormal_probability == pytest.approx(b.abnormal_probability, abs=TOLERANCE)
        assert ours.trunk_images == len(x)  # ONNX: the last batch is not padded
        assert theirs.trunk_images == 4 * -(-len(x) // 4)


class TestExport:
    def test_bundle_writes_export_checked_graphs_of_every_network(self, tiny_bundle: Path) -> None:
        meta = read_meta(tiny_bundle)
        section = meta["onnx"]
        assert section["trunk"]["source_sha256"] == meta["trunk"]["sha256"]
        assert {n: r["source_sha256"] for n, r in section["heads"].items()} == {
            n: h["sha256"] for n, h in meta["heads"].items()
        }
        records = [section["trunk"], *section["heads"].values()]
        assert all(r["max_abs_diff"] <= TOLERANCE for r in records)
        listed = sorted(Path(r["file"]).name for r in records)
        assert sorted(p.name for p in (tiny_bundle / "onnx").iterdir()) == listed

    def test_a_retrained_head_replaces_its_graph(self, tiny_bundle: Path, tmp_path: Path) -> None:
        from batchfrac.bundle.write import write_head
        from tests.b0_helpers import scramble_weights

        path = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
        before = read_meta(path)
        head = ModelBundle.load(path).runtime.head("hand")
        scramble_weights(head, seed=99)
        write_head(path, Head.HAND, head, {"trunk_sha256": before["trunk"]["sha256"]})
        after = read_meta(path)
        old, new = before["onnx"]["heads"]["hand"], after["onnx"]["heads"]["hand"]
        assert new["source_sha256"] == after["heads"]["hand"]["sha256"] != old["source_sha256"]
        assert not (path / old["file"]).exists() and (path / new["file"]).exists()
        assert after["onnx"]["heads"]["router"] == before["onnx"]["heads"]["router"]
        assert ModelBundle.load(path).use_backend(Backend.AUTO).name == "onnx"

    def test_graphs_follow_keras_padding_at_odd_sizes(self) -> None:
        from batchfrac.bundle.network import build_backbone, build_head, split_backbone
        from tests.b0_helpers import scramble_weights

        # 40 px: 20, 10, 5, then stride 2 on 5 and on 3 (odd: no extra padding before)
        backbone = build_backbone(None, 40)
        scramble_weights(backbone, seed=3)
        trunk, body = split_backbone(backbone)
        head = build_head(body, 7, "router")
        trunk_onnx, record = export_trunk(trunk, "0" * 64)  # raises beyond the tolerance
        assert record["max_abs_diff"] <= TOLERANCE
        _, head_record = export_head("router", head, "1" * 64, trunk_onnx, 40)
        assert head_record["max_abs_diff"] <= TOLERANCE
