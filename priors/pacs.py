"""The facility's PACS as a query/retrieve SCP: C-FIND (patient root, patient then
study level) and C-MOVE to our gateway.  Network only: no database here, so no
caller can hold a transaction open across a PACS's answer."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
)

from priors.relevance import StudyFacts

SUCCESS = 0x0000
PENDING = frozenset({0xFF00, 0xFF01})
WARNING_SUBOPERATIONS_FAILED = 0xB000
MOVE_DESTINATION_UNKNOWN = 0xA801
# Out of resources: the PACS may manage later.
TRANSIENT = frozenset({0xA700, 0xA701, 0xA702})


@dataclass(frozen=True)
class Pacs:
    """Where a facility's PACS answers."""

    ae_title: str
    host: str
    port: int


class PacsUnavailable(Exception):
    """The PACS could not be asked or did not answer (down, refused the association,
    aborted it, timed out, out of resources): worth trying again later."""


@dataclass(frozen=True)
class MoveResult:
    """How a C-MOVE of one study ended (a refusal that retrying will not change is
    ``ok=False`` with its reason; a transient one raises ``PacsUnavailable``)."""

    ok: bool
    completed: int
    failed: int
    reason: str = ""


@contextmanager
def association(
    pacs: Pacs, *, calling_ae: str, timeout: float, dimse_timeout: float | None = None
) -> Iterator[Association]:
    """An association with the PACS for Q/R (find and move), released on exit."""
    # pynetdicom leaks the socket of a refused connection (its shutdown() fails
    # before close()); a refusal is found here first, on a socket we close.
    try:
        socket.create_connection((pacs.host, pacs.port), timeout=timeout).close()
    except OSError as exc:
        raise PacsUnavailable(
            f"PACS {pacs.ae_title} at {pacs.host}:{pacs.port} did not answer ({exc})"
        ) from exc
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelMove)
    ae.acse_timeout = timeout
    ae.network_timeout = timeout
    ae.dimse_timeout = dimse_timeout or timeout
    ae.connection_timeout = timeout
    assoc = ae.associate(pacs.host, pacs.port, ae_title=pacs.ae_title)
    # When the PACS refuses the connection or resets it mid-exchange, pynetdicom's
    # close fails at shutdown() and leaves the socket open: closed here, whatever
    # happened.
    raw_socket = assoc.dul.socket.socket if assoc.dul.socket else None
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "did not answer"
        assoc.abort()
        ae.shutdown()
        if raw_socket is not None:
            raw_socket.close()
        raise PacsUnavailable(f"PACS {pacs.ae_title} at {pacs.host}:{pacs.port} {why}")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()
        ae.shutdown()
        if raw_socket is not None:
            raw_socket.close()


def _status(status: Dataset) -> int | None:
    # pynetdicom answers an empty dataset when the association died mid-exchange.
    return int(status.Status) if "Status" in status else None


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, list | tuple) or getattr(value, "is_multi_value", False):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _date(value: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(value[:8], "%Y%m%d").date()  # noqa: DTZ007 - a DICOM DA
    except ValueError:
        return None


def _find(assoc: Association, query: Dataset) -> list[Dataset]:
    answers: list[Dataset] = []
    for status, identifier in assoc.send_c_find(
        query, PatientRootQueryRetrieveInformationModelFind
    ):
        code = _status(status)
        if code is None:
            raise PacsUnavailable("the PACS aborted the association during C-FIND")
        if code in PENDING and identifier is not None:
            answers.append(identifier)
        elif code == SUCCESS:
            break
        elif code not in PENDING:
            raise PacsUnavailable(f"C-FIND failed with status 0x{code:04X}")
    return answers


def studies_find(
    pacs: Pacs, *, calling_ae: str, patient_id: str, timeout: float = 20.0
) -> list[StudyFacts]:
    """The patient's studies on the PACS: a patient-level C-FIND by Patient ID (none
    if the PACS does not know the patient), then a study-level one for its studies
    (date, modalities, description, body part when the PACS returns it, accession)."""
    with association(pacs, calling_ae=calling_ae, timeout=timeout) as assoc:
        patient = Dataset()
        patient.QueryRetrieveLevel = "PATIENT"
        patient.PatientID = patient_id
        patient.PatientName = ""
        if not _find(assoc, patient):
            return []
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = patient_id
        query.StudyInstanceUID = ""
        query.StudyDate = ""
        query.ModalitiesInStudy = ""
        query.StudyDescription = ""
        query.BodyPartExamined = ""
        query.AccessionNumber = ""
        found: list[StudyFacts] = []
        for answer in _find(assoc, query):
            uid = _text(answer, "StudyInstanceUID")
            if not uid:
                continue
            modalities = _text(answer, "ModalitiesInStudy")
            found.append(
                StudyFacts(
                    study_instance_uid=uid,
                    study_date=_date(_text(answer, "StudyDate")),
                    modalities=(modalities,) if modalities else (),
                    body_part=_text(answer, "BodyPartExamined"),
                    description=_text(answer, "StudyDescription"),
                    accession_number=_text(answer, "AccessionNumber"),
                )
            )
        return found


def study_move(
    pacs: Pacs,
    *,
    calling_ae: str,
    move_destination: str,
    patient_id: str,
    study_instance_uid: str,
    timeout: float = 20.0,
    dimse_timeout: float = 120.0,
) -> MoveResult:
    """C-MOVE one study to ``move_destination`` (our gateway's priors AE title, which
    the PACS must know).  Returns when the PACS reports the move finished;
    ``dimse_timeout`` bounds the wait between two of its answers."""
    with association(
        pacs, calling_ae=calling_ae, timeout=timeout, dimse_timeout=dimse_timeout
    ) as assoc:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = patient_id
        query.StudyInstanceUID = study_instance_uid
        completed = failed = 0
        final: int | None = None
        for status, _ in assoc.send_c_move(
            query, move_destination, PatientRootQueryRetrieveInformationModelMove
        ):
            code = _status(status)
            if code is None:
                raise PacsUnavailable("the PACS aborted the association during C-MOVE")
            completed = int(status.get("NumberOfCompletedSuboperations", completed) or 0)
            failed = int(status.get("NumberOfFailedSuboperations", failed) or 0)
            if code not in PENDING:
                final = code
    if final in TRANSIENT:
        raise PacsUnavailable(f"C-MOVE: the PACS is out of resources (0x{final:04X})")
    if final == SUCCESS:
        return MoveResult(ok=True, completed=completed, failed=failed)
    if final == WARNING_SUBOPERATIONS_FAILED:
        return MoveResult(
            ok=completed > 0,
            completed=completed,
            failed=failed,
            reason=f"{failed} instance(s) failed to arrive",
        )
    if final == MOVE_DESTINATION_UNKNOWN:
        return MoveResult(
            ok=False,
            completed=completed,
            failed=failed,
            reason=f"the PACS does not know the move destination {move_destination}",
        )
    if final is None:
        raise PacsUnavailable("the PACS ended the C-MOVE without a final status")
    return MoveResult(
        ok=False,
        completed=completed,
        failed=failed,
        reason=f"C-MOVE refused with status 0x{final:04X}",
    )
