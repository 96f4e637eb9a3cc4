"""Store exported objects in a PACS: DICOMweb STOW-RS or DIMSE C-STORE, each object once.

:func:`send_objects` asks the :class:`~batchfrac.pacs.ledger.SendLedger` what the
destination already confirmed and sends only the rest, one object per request so that a
refusal names its object. A destination that cannot be reached at all is a
:class:`SendError` (fatal); an object the destination refuses is a ``refused`` outcome and
the others still go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from ..errors import BatchfracError
from ..exitcodes import ExitCode
from .export import ExportedObject
from .ledger import SendLedger

HTTP_ATTEMPTS = 3
"""Tries per DICOMweb request (dicomweb-client backs off 2 s, 4 s, ... between them)."""


def set_attempts(client: object, attempts: int) -> None:
    """Let a dicomweb-client ``client`` try each request ``attempts`` times (1 = no retry);
    it retries connection failures and HTTP 408/429/503/504."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    client.set_http_retry_params(retry=attempts > 1, max_attempts=attempts)  # type: ignore[attr-defined]


class SendError(BatchfracError):
    """The destination cannot be used at all (unreachable, association refused, bad URL)."""


class SendStatus(str, Enum):
    """Outcome of one object."""

    STORED = "stored"
    """The destination confirmed it (possibly with a warning, in ``detail``)."""
    ALREADY_STORED = "already_stored"
    """The ledger says this destination confirmed these very bytes before: not sent."""
    CHANGED = "changed"
    """The destination confirmed this UID with other bytes before: not sent again."""
    REFUSED = "refused"
    WOULD_SEND = "would_send"
    """``--dry-run``: not stored yet, would be sent."""


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What a destination said about one object."""

    stored: bool
    detail: str = ""


class Destination(Protocol):
    """Somewhere objects can be stored (:class:`DicomWebDestination`, :class:`DimseDestination`)."""

    def store(self, path: Path) -> StoreResult:
        """Store the DICOM file at ``path``; :class:`SendError` when the destination is gone."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """One object and what happened to it."""

    object: ExportedObject
    status: SendStatus
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SendSummary:
    """Every object's outcome, in export order."""

    destination: str
    outcomes: tuple[SendOutcome, ...]

    def count(self, status: SendStatus) -> int:
        """How many objects had ``status``."""
        return sum(o.status is status for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 when nothing was refused, else 3."""
        return ExitCode.PARTIAL if self.count(SendStatus.REFUSED) else ExitCode.OK


def send_objects(
    objects: Sequence[ExportedObject],
    destination: Callable[[], Destination],
    destination_key: str,
    ledger: SendLedger,
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SendSummary:
    """Send each object the ledger does not show as stored at ``destination_key``.

    ``destination`` is called (it connects) only when something is to be sent, so a
    repeated send with nothing new never contacts the server.
    """
    outcomes: list[SendOutcome | None] = []
    pending: list[tuple[int, ExportedObject, str]] = []
    for index, obj in enumerate(objects):
        digest = hashlib.sha256(obj.path.read_bytes()).hexdigest()
        entry = ledger.get(destination_key, obj.sop_instance_uid)
        if entry is None:
            outcomes.append(None)
            pending.append((index, obj, digest))
        elif entry.sha256 == digest:
            outcomes.append(SendOutcome(obj, SendStatus.ALREADY_STORED))
        else:
            outcomes.append(
                SendOutcome(obj, SendStatus.CHANGED, "stored earlier with other content")
            )
    if dry_run:
        for index, obj, _ in pending:
            outcomes[index] = SendOutcome(obj, SendStatus.WOULD_SEND)
    elif pending:
        target = destination()
        try:
            for done, (index, obj, digest) in enumerate(pending, start=1):
                result = target.store(obj.path)
                if result.stored:
                    ledger.record(destination_key, obj.sop_instance_uid, digest)
                status = SendStatus.STORED if result.stored else SendStatus.REFUSED
                outcomes[index] = SendOutcome(obj, status, result.detail)
                if progress is not None:
                    progress(done, len(pending))
        finally:
            target.close()
    return SendSummary(destination_key, tuple(o for o in outcomes if o is not None))


class DicomWebDestination:
    """STOW-RS to a DICOMweb base URL (e.g. ``http://pacs:8042/dicom-web``), by dicomweb-client."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 60.0,
        attempts: int = HTTP_ATTEMPTS,
        verify: bool = True,
    ) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient

        self._url = url.rstrip("/")
        self._session = requests.Session()
        try:
            self._client = DICOMwebClient(url=self._url, session=self._session, timeout=timeout)
        except ValueError as exc:
            raise SendError(f"bad DICOMweb URL {url!r}: {exc}") from None
        set_attempts(self._client, attempts)
        self._verify = verify

    def store(self, path: Path) -> StoreResult:
        """POST one instance; read its fate from the response's (0008,1198) *Failed SOP
        Sequence* / (0008,1199) *Referenced SOP Sequence*; then, unless ``verify`` is off,
        check with QIDO-RS that the server really holds it (some acknowledge instances that
        a filter dropped)."""
        import pydicom
        import requests

        ds = pydicom.dcmread(path)
        try:
            response = self._client.store_instances([ds])
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in (401, 403, 404, 405):
                raise SendError(f"{self._url} refused STOW-RS (HTTP {code})") from None
            return StoreResult(False, f"HTTP {code}{_failure_reason(exc.response)}")
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise SendError(f"cannot reach {self._url}: {type(exc).__name__}") from None
        for item in response.get("FailedSOPSequence", []):
            if item.get("ReferencedSOPInstanceUID") == ds.SOPInstanceUID:
                return StoreResult(False, f"failure reason {_hex(item.get('FailureReason'))}")
        if self._verify and not self._holds(ds.StudyInstanceUID, ds.SOPInstanceUID):
            return StoreResult(False, "acknowledged, but QIDO-RS does not find it on the server")
        for item in response.get("ReferencedSOPSequence", []):
            if (
                item.get("ReferencedSOPInstanceUID") == ds.SOPInstanceUID
                and "WarningReason" in item
            ):
                return StoreResult(True, f"warning reason {_hex(item.get('WarningReason'))}")
        return StoreResult(True)

    def _holds(self, study_uid: str, sop_uid: str) -> bool:
        import requests

        try:
            found = self._client.search_for_instances(
                study_instance_uid=study_uid, search_filters={"SOPInstanceUID": sop_uid}
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise SendError(f"cannot reach {self._url}: {type(exc).__name__}") from None
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            raise SendError(f"{self._url} refused the QIDO-RS check (HTTP {code})") from None
        return any(item.get("00080018", {}).get("Value", [None])[0] == sop_uid for item in found)

    def close(self) -> None:
        self._session.close()


def dicomweb_key(url: str) -> str:
    """The ledger name of a DICOMweb destination."""
    return "dicomweb:" + url.rstrip("/")


def dimse_key(host: str, port: int, called_ae: str) -> str:
    """The ledger name of a DIMSE destination."""
    return f"dimse:{called_ae}@{host}:{port}"


class DimseDestination:
    """C-STORE over one association with ``called_ae`` at ``host:port`` (pynetdicom)."""

    SUCCESS = 0x0000
    WARNINGS = frozenset({0x0001, 0xB000, 0xB006, 0xB007})

    def __init__(
        self, host: str, port: int, called_ae: str, *, calling_ae: str = "BATCHFRAC"
    ) -> None:
        from pydicom.uid import ComprehensiveSRStorage, KeyObjectSelectionDocumentStorage
        from pynetdicom import AE

        self._where = f"{called_ae}@{host}:{port}"
        ae = AE(ae_title=calling_ae)
        for sop_class in (ComprehensiveSRStorage, KeyObjectSelectionDocumentStorage):
            ae.add_requested_context(sop_class)
        self._assoc = ae.associate(host, port, ae_title=called_ae)
        if not self._assoc.is_established:
            state = "rejected" if self._assoc.is_rejected else "could not be established"
            raise SendError(f"association with {self._where} {state}")

    def store(self, path: Path) -> StoreResult:
        """C-STORE one instance; (0000,0900) *Status* 0 or a warning counts as stored."""
        import pydicom

        ds = pydicom.dcmread(path)
        try:
            status = self._assoc.send_c_store(ds)
        except ValueError as exc:  # no accepted presentation context for this SOP class
            return StoreResult(False, str(exc).splitlines()[0])
        except RuntimeError as exc:
            raise SendError(f"association with {self._where} lost: {exc}") from None
        if "Status" not in status:
            raise SendError(f"no C-STORE response from {self._where} (association lost)")
        code = int(status.Status)
        if code == self.SUCCESS:
            return StoreResult(True)
        if code in self.WARNINGS:
            return StoreResult(True, f"warning status 0x{code:04X}")
        return StoreResult(False, f"status 0x{code:04X}")

    def close(self) -> None:
        if self._assoc.is_established:
            self._assoc.release()


def _hex(value: object) -> str:
    return f"0x{int(value):04X}" if isinstance(value, int) else str(value)


def _failure_reason(response: object) -> str:
    import pydicom

    try:
        doc = pydicom.Dataset.from_json(response.json())  # type: ignore[attr-defined]
        reasons = {_hex(i.get("FailureReason")) for i in doc.get("FailedSOPSequence", [])}
    except Exception:  # a body that is not DICOM JSON: the HTTP status says enough
        return ""
    return f" (failure reason {', '.join(sorted(reasons))})" if reasons else ""
