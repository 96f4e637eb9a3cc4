"""The PACS round trip against a real Orthanc (DICOMweb plugin) on 127.0.0.1: send the
SR/KOS by STOW-RS and C-STORE, find them by QIDO-RS under the original studies, send
again without duplicates, get refusals reported, and pull studies back into a folder."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from batchfrac.cli import app
from batchfrac.pacs.export import export_dicom
from tests.pacs import scan_output as so
from tests.pacs.tools import Orthanc, free_port, start_orthanc

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "archive"
REJECT_KO = """
function ReceivedInstanceFilter(dicom, origin, info)
  return dicom.Modality ~= 'KO'
end
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, [*args, "--http-attempts", "1"])
    return result.exit_code, result.stdout, result.stderr


def qido(server: Orthanc, study: str, modality: str) -> set[str]:
    """SOP Instance UIDs of ``modality`` in ``study``, found with QIDO-RS (dicomweb-client)."""
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=server.dicomweb)
    found = set()
    for series in client.search_for_series(study, search_filters={"Modality": modality}):
        series_uid = series["0020000E"]["Value"][0]
        for instance in client.search_for_instances(study, series_uid):
            found.add(instance["00080018"]["Value"][0])
    return found


def upload_sources(server: Orthanc, scan: Path) -> None:
    for path in sorted((scan.parent / "archive").rglob("*.dcm")):
        assert server.upload(path), path


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    return so.make_scan_output(tmp_path / "scan")


class TestSend:
    def test_stow_rs_files_results_under_the_original_studies_once(
        self, orthanc: Orthanc, scan: Path, tmp_path: Path
    ) -> None:
        upload_sources(orthanc, scan)
        sources = orthanc.instance_count()
        code, out, err = invoke("send", str(scan), "--dicomweb", orthanc.dicomweb)
        assert code == 0, err
        assert f"dicomweb:{orthanc.dicomweb}: 3 stored, 0 already stored" in out
        expected = export_dicom(scan, tmp_path / "expected")
        for study in (o.study_instance_uid for o in expected.objects):
            srs = {
                o.sop_instance_uid
                for o in expected.objects
                if o.study_instance_uid == study and o.kind.value == "sr"
            }
            kos = {
                o.sop_instance_uid
                for o in expected.objects
                if o.study_instance_uid == study and o.kind.value == "kos"
            }
            assert qido(orthanc, study, "SR") == srs
            assert qido(orthanc, study, "KO") == kos
        assert orthanc.instance_count() == sources + 3

        code, out, _ = invoke("send", str(scan), "--dicomweb", orthanc.dicomweb)
        assert code == 0 and "0 stored, 3 already stored" in out
        assert orthanc.instance_count() == sources + 3

        orthanc.stop()  # nothing new to send: the server is not even contacted
        code, out, _ = invoke("send", str(scan), "--dicomweb", orthanc.dicomweb)
        assert code == 0 and "0 stored, 3 already stored" in out

    def test_c_store_to_the_same_orthanc(self, orthanc: Orthanc, scan: Path) -> None:
        upload_sources(orthanc, scan)
        target = ["--dimse", f"127.0.0.1:{orthanc.dicom_port}", "--called-ae", orthanc.aet]
        code, out, err = invoke("send", str(scan), *target)
        assert code == 0, err
        assert "3 stored" in out
        hand = so.standard_studies()[0].uid
        assert len(qido(orthanc, hand, "SR")) == 1 and len(qido(orthanc, hand, "KO")) == 1
        code, out, _ = invoke("send", str(scan), *target)
        assert code == 0 and "0 stored, 3 already stored" in out

    def test_an_object_the_server_drops_is_refused_and_tried_again(
        self, tmp_path: Path, scan: Path
    ) -> None:
        # Orthanc 1.10 acknowledges (STOW-RS and C-STORE) an instance its Lua filter drops:
        # only the QIDO-RS check after the STOW tells.
        server = start_orthanc(tmp_path / "strict", lua=REJECT_KO)
        try:
            upload_sources(server, scan)
            code, out, err = invoke("send", str(scan), "--dicomweb", server.dicomweb)
            assert code == 3, (out, err)
            assert "2 stored, 0 already stored, 1 refused" in out
            (refused,) = [line for line in err.splitlines() if line.startswith("refused: kos ")]
            assert refused.endswith("acknowledged, but QIDO-RS does not find it on the server")
            code, out, err = invoke("send", str(scan), "--dicomweb", server.dicomweb)
            assert code == 3 and "0 stored, 2 already stored, 1 refused" in out
            assert qido(server, so.standard_studies()[0].uid, "KO") == set()
        finally:
            server.stop()

    def test_c_store_refusal_status_exits_3(self, scan: Path) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.presentation import StoragePresentationContexts

        received: list[str] = []

        def on_store(event: evt.Event) -> int:
            if event.dataset.Modality == "KO":
                return 0xA700  # Refused: out of resources
            received.append(event.dataset.SOPInstanceUID)
            return 0x0000

        ae = AE(ae_title="STRICT")
        ae.supported_contexts = StoragePresentationContexts
        port = free_port()
        scp = ae.start_server(("127.0.0.1", port), block=False,
                              evt_handlers=[(evt.EVT_C_STORE, on_store)])  # fmt: skip
        try:
            target = ["--dimse", f"127.0.0.1:{port}", "--called-ae", "STRICT"]
            code, out, err = invoke("send", str(scan), *target)
            assert code == 3 and "2 stored, 0 already stored, 1 refused" in out
            assert len(received) == 2
            (refused,) = [line for line in err.splitlines() if line.startswith("refused: kos ")]
            assert refused.endswith(": status 0xA700")
            code, out, _ = invoke("send", str(scan), *target)
            assert code == 3 and "0 stored, 2 already stored, 1 refused" in out
            assert len(received) == 2
        finally:
            scp.shutdown()


class TestPull:
    def test_pulls_the_archive_back_as_plain_files_and_resumes(
        self, orthanc: Orthanc, tmp_path: Path
    ) -> None:
        originals: dict[str, list[pydicom.Dataset]] = {}
        for path in sorted(p for p in SAMPLE.rglob("*") if p.is_file()):
            if orthanc.upload(path):
                ds = pydicom.dcmread(path)
                originals.setdefault(ds.SOPInstanceUID, []).append(ds)
        stored = orthanc.instance_count()
        assert stored == len(originals) >= 10

        out = tmp_path / "pulled"
        code, stdout, err = invoke("pull", orthanc.dicomweb, "--out", str(out))
        assert code == 0, err
        assert f"{stored} instances: {stored} retrieved, 0 already present, 0 failed" in stdout
        files = sorted(p for p in out.rglob("*") if p.is_file())
        assert len(files) == stored
        for path in files:
            ds = pydicom.dcmread(path)
            study, series, name = path.relative_to(out).parts
            assert (study, series, name) == (
                ds.StudyInstanceUID,
                ds.SeriesInstanceUID,
                f"{ds.SOPInstanceUID}.dcm",
            )
            assert any(
                o.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
                and o.PixelData == ds.PixelData
                for o in originals[ds.SOPInstanceUID]
            ), path  # retrieved as stored: same syntax, same pixel bytes

        files[0].unlink()
        code, stdout, _ = invoke("pull", orthanc.dicomweb, "--out", str(out))
        assert code == 0 and f"1 retrieved, {stored - 1} already present" in stdout

    def test_date_and_modality_filters(self, orthanc: Orthanc, tmp_path: Path) -> None:
        for path in (p for p in SAMPLE.rglob("*") if p.is_file()):
            orthanc.upload(path)
        code, stdout, _ = invoke("pull", orthanc.dicomweb, "--out", str(tmp_path / "a"),
                                 "--since", "2017-01-01", "--until", "2017-12-31")  # fmt: skip
        assert code == 0 and stdout.startswith("2 studies, 3 instances")
        dates = {pydicom.dcmread(p).StudyDate for p in (tmp_path / "a").rglob("*.dcm")}
        assert dates == {"20170610", "20170710"}
        code, stdout, _ = invoke(
            "pull", orthanc.dicomweb, "--out", str(tmp_path / "b"), "--modalities", "CR"
        )
        assert code == 0 and stdout.startswith("1 studies, 1 instances")
        assert {pydicom.dcmread(p).Modality for p in (tmp_path / "b").rglob("*.dcm")} == {"CR"}
