"""Bring studies from a DICOMweb server into a folder that ``batchfrac scan`` reads.

QIDO-RS finds the studies ((0008,0020) *Study Date* range) and, per study, the series of
the wanted modalities ((0008,0060)) and their instances; studies without such a series
are left out.
WADO-RS retrieves each instance in its stored transfer syntax into
``DIR/<study>/<series>/<sop>.dcm`` (every name a sanitised UID). Files appear atomically,
so a pull that stops for any reason is resumed by running it again: instances already on
disk are not fetched twice. At most ``jobs`` retrievals run at a time. Nothing but
DICOM files is left in ``DIR``, so a scan of it counts exactly the pulled instances.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import BatchfracError
from ..exitcodes import ExitCode
from .send import HTTP_ATTEMPTS, set_attempts
from .uids import uid_file_name

log = logging.getLogger(__name__)

QIDO_PAGE = 500
"""Results asked for per QIDO-RS request."""

TEMP_PREFIX = ".batchfrac-pull-"
"""Prefix of in-flight files; left-overs of a killed pull are removed by the next one."""


class PullError(BatchfracError):
    """The server cannot be queried or reached: nothing more can be pulled."""


@dataclass(frozen=True, slots=True)
class PullQuery:
    """Which studies to pull: a (0008,0020) *Study Date* range and modalities."""

    since: date | None = None
    until: date | None = None
    modalities: tuple[str, ...] = ("CR", "DX")

    def study_date(self) -> str | None:
        """The QIDO-RS range-matching value of *Study Date*, or ``None`` for any date."""
        if self.since is None and self.until is None:
            return None
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError(f"--since {self.since} is after --until {self.until}")
        low = self.since.strftime("%Y%m%d") if self.since else ""
        high = self.until.strftime("%Y%m%d") if self.until else ""
        return f"{low}-{high}"


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """One instance to pull (UIDs as the server gave them)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str

    def relative_path(self) -> Path:
        """``<study>/<series>/<sop>.dcm``, each part a sanitised UID."""
        return (
            Path(uid_file_name(self.study_instance_uid, ""))
            / uid_file_name(self.series_instance_uid, "")
            / uid_file_name(self.sop_instance_uid)
        )


@dataclass(frozen=True, slots=True)
class PullSummary:
    """What a pull found, fetched, found already present, and could not fetch."""

    studies: int
    instances: int
    retrieved: int
    already_present: int
    failed: tuple[tuple[InstanceRef, str], ...]

    @property
    def exit_code(self) -> int:
        """0 when every instance found is on disk, else 3."""
        return ExitCode.PARTIAL if self.failed else ExitCode.OK


ClientFactory = Callable[[], Any]


def dicomweb_client_factory(
    url: str, *, timeout: float = 60.0, attempts: int = HTTP_ATTEMPTS
) -> ClientFactory:
    """A factory of dicomweb-client clients for ``url`` (one per thread: no shared session)."""

    def make() -> Any:
        from dicomweb_client.api import DICOMwebClient

        try:
            client = DICOMwebClient(url=url.rstrip("/"), timeout=timeout)
        except ValueError as exc:
            raise PullError(f"bad DICOMweb URL {url!r}: {exc}") from None
        set_attempts(client, attempts)
        return client

    return make


def pull(
    client_factory: ClientFactory,
    out: Path,
    query: PullQuery,
    *,
    jobs: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> PullSummary:
    """Pull every instance of the studies matching ``query`` into ``out``.

    Raises :class:`PullError` when the server cannot be queried or reached.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(out)
    client = client_factory()
    studies = find_studies(client, query)
    refs = [ref for study in studies for ref in find_instances(client, study, query.modalities)]
    missing = [ref for ref in refs if not (out / ref.relative_path()).is_file()]
    failed: list[tuple[InstanceRef, str]] = []
    local = threading.local()

    def fetch(ref: InstanceRef) -> None:
        if not hasattr(local, "client"):
            local.client = client_factory()
        retrieve_instance(local.client, ref, out / ref.relative_path())

    done = 0
    for ref, error in _bounded_map(fetch, missing, jobs):
        done += 1
        if error is not None:
            failed.append((ref, error))
        if progress is not None:
            progress(done, len(missing))
    return PullSummary(
        studies=len({ref.study_instance_uid for ref in refs}),
        instances=len(refs),
        retrieved=len(missing) - len(failed),
        already_present=len(refs) - len(missing),
        failed=tuple(failed),
    )


def find_studies(client: Any, query: PullQuery) -> list[str]:
    """Study Instance UIDs in the *Study Date* range (QIDO-RS, all pages), sorted.

    Modalities are matched per series (:func:`find_instances`), not with
    (0008,0061) *Modalities in Study*: some servers (Orthanc 1.10 with DICOMweb 1.7) page
    that match wrongly, which would lose studies without a word.
    """
    filters: dict[str, str] = {}
    if query.study_date() is not None:
        filters["StudyDate"] = str(query.study_date())
    search = partial(client.search_for_studies, search_filters=filters)
    return sorted(_paged(search, "0020000D"))


def find_instances(client: Any, study: str, modalities: Sequence[str]) -> list[InstanceRef]:
    """The instances of ``study``'s series of ``modalities`` ((0008,0060); all when empty)."""
    series: set[str] = set()
    for modality in modalities or (None,):
        filters = {"Modality": modality} if modality else {}
        search = partial(client.search_for_series, study_instance_uid=study, search_filters=filters)
        series.update(_paged(search, "0020000E"))
    refs: list[InstanceRef] = []
    for series_uid in sorted(series):
        search = partial(
            client.search_for_instances, study_instance_uid=study, series_instance_uid=series_uid
        )
        refs.extend(InstanceRef(study, series_uid, sop) for sop in _paged(search, "00080018"))
    return sorted(set(refs), key=lambda r: (r.series_instance_uid, r.sop_instance_uid))


def retrieve_instance(client: Any, ref: InstanceRef, path: Path) -> None:
    """WADO-RS one instance (any transfer syntax, as stored) and write it atomically to ``path``."""
    ds = client.retrieve_instance(
        ref.study_instance_uid,
        ref.series_instance_uid,
        ref.sop_instance_uid,
        media_types=(("application/dicom", "*"),),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            ds.save_as(handle, enforce_file_format=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _bounded_map(
    fetch: Callable[[InstanceRef], None], refs: Sequence[InstanceRef], jobs: int
) -> Iterator[tuple[InstanceRef, str | None]]:
    """Run ``fetch`` on ``refs`` with at most ``jobs`` in flight; yield (ref, error or None).

    A connection failure ends the pull (:class:`PullError`); an instance the server will
    not give (HTTP error, undecodable answer) is that instance's error.
    """
    import requests

    pending = iter(refs)
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="pull") as pool:
        in_flight: dict[Future[None], InstanceRef] = {}
        try:
            while True:
                while len(in_flight) < jobs:
                    ref = next(pending, None)
                    if ref is None:
                        break
                    in_flight[pool.submit(fetch, ref)] = ref
                if not in_flight:
                    return
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    ref = in_flight.pop(future)
                    error = future.exception()
                    if error is None:
                        yield ref, None
                    elif isinstance(error, requests.ConnectionError | requests.Timeout):
                        raise PullError(f"server unreachable: {type(error).__name__}")
                    elif isinstance(error, requests.HTTPError):
                        status = error.response.status_code if error.response is not None else 0
                        yield ref, f"HTTP {status}"
                    elif isinstance(error, OSError):
                        raise error
                    elif isinstance(error, Exception):
                        # the server's answer was not a DICOM instance (e.g. a bad UID)
                        yield ref, f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                    else:
                        raise error
        finally:
            for future in in_flight:
                future.cancel()


def _paged(search: Callable[..., Iterable[Mapping[str, Any]]], tag: str) -> list[str]:
    """The distinct values of ``tag`` over all pages of one QIDO-RS search.

    Pages are asked for with ``limit``/``offset`` and the paging stops at a short page or
    at a page that brings nothing new, so a server that ignores ``offset`` cannot loop us
    forever (dicomweb-client's own ``get_remaining`` would). Failures are :class:`PullError`.
    """
    import requests

    found: dict[str, None] = {}
    offset = 0
    while True:
        try:
            page = list(search(limit=QIDO_PAGE, offset=offset))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PullError(f"server unreachable: {type(exc).__name__}") from None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise PullError(f"QIDO-RS query refused (HTTP {status})") from None
        except ValueError as exc:
            raise PullError(f"QIDO-RS answer not understood: {str(exc).splitlines()[0]}") from None
        values = [v for v in (_value(item, tag) for item in page) if v is not None]
        new = [v for v in values if v not in found]
        found.update(dict.fromkeys(new))
        if len(page) < QIDO_PAGE:
            return list(found)
        if not new:
            log.warning(
                "the server repeated a full page of QIDO-RS results: it seems to ignore "
                "'offset'; results may be incomplete (narrow --since/--until)"
            )
            return list(found)
        offset += len(page)


def _value(item: Mapping[str, Any], tag: str) -> str | None:
    """The first value of ``tag`` in one DICOM JSON result, if it is a string."""
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, Mapping) else None
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return None


def _remove_stale_temp_files(out: Path) -> None:
    for path in out.rglob(TEMP_PREFIX + "*"):
        if path.is_file():
            path.unlink(missing_ok=True)
