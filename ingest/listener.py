"""The DICOM gateway: a pynetdicom application entity that files C-STOREs.

One process serves many associations (a thread each).  Several processes may
share a port (SO_REUSEPORT, see the ``dicom_listener`` command) and several
hosts may share the database: every write below is safe under concurrency.
"""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.db.models import Q
from pydicom import uid as dicom_uid
from pydicom.uid import UID
from pynetdicom import AllStoragePresentationContexts, _config, dimse_messages, evt
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta as _create_file_meta
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from ingest import services, status
from ingest.selectors import facility_quota_left
from ingest.storage import ObjectStorage, default_storage
from network.models import Facility, FacilityAETitle
from network.validators import address_allowed
from studies.validators import is_valid_uid

logger = logging.getLogger("ingest.listener")

# Stored as received, never transcoded: accept the uncompressed syntaxes and the
# common compressed ones a modality or PACS may send.
TRANSFER_SYNTAXES = [
    dicom_uid.ExplicitVRLittleEndian,
    dicom_uid.ImplicitVRLittleEndian,
    dicom_uid.DeflatedExplicitVRLittleEndian,
    dicom_uid.ExplicitVRBigEndian,
    dicom_uid.JPEGBaseline8Bit,
    dicom_uid.JPEGExtended12Bit,
    dicom_uid.JPEGLossless,
    dicom_uid.JPEGLosslessSV1,
    dicom_uid.JPEGLSLossless,
    dicom_uid.JPEGLSNearLossless,
    dicom_uid.JPEG2000Lossless,
    dicom_uid.JPEG2000,
    dicom_uid.HTJ2KLossless,
    dicom_uid.HTJ2KLosslessRPCL,
    dicom_uid.HTJ2K,
    dicom_uid.RLELossless,
]

_REFUSED = "\x00refused"


class GatedApplicationEntity(ApplicationEntity):
    """An AE whose accepted calling AE titles come from the facilities in the database.

    pynetdicom checks ``require_calling_aet`` while negotiating, in the
    association's own thread; answering per association lets us use the calling
    AE title and the peer address together (per-facility IP allow-lists) and
    remember the facility for the C-STORE handler.
    """

    @property
    def require_calling_aet(self) -> list[str]:
        assoc = threading.current_thread()
        if not isinstance(assoc, Association) or not assoc.is_acceptor:
            return [_REFUSED]
        request = assoc.requestor.primitive
        if request is None:
            return [_REFUSED]
        calling = str(request.calling_ae_title).strip()
        address = assoc.requestor.address
        verdict = facility_admission(calling_ae=calling, address=address)
        if isinstance(verdict, str):
            logger.warning("rejected association from %s (%s): %s", calling, address, verdict)
            return [_REFUSED]
        assoc.facility_id = verdict.pk  # type: ignore[attr-defined]
        assoc.max_object_bytes = verdict.dicom_max_object_bytes  # type: ignore[attr-defined]
        assoc.quota_left_bytes = facility_quota_left(verdict)  # type: ignore[attr-defined]
        return [calling]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        """Ignored: admission comes from the database, not from a fixed list."""

    # The called AE titles answered: the gateway's own, its configured aliases and
    # the priors AE title (DICOM_PRIORS_AE_TITLE).
    called_ae_titles: frozenset[str] = frozenset()
    priors_ae_title: str = ""

    @property
    def require_called_aet(self) -> bool:
        """Always required.  pynetdicom compares the called AE title with the
        acceptor's only; an alias is accepted by answering under that title (the
        A-ASSOCIATE-AC echoes what was called), anything else is rejected
        permanently by the service user, "called AE title not recognised"."""
        assoc = threading.current_thread()
        if not isinstance(assoc, Association) or not assoc.is_acceptor:
            return True
        request = assoc.requestor.primitive
        called = str(request.called_ae_title).strip() if request is not None else ""
        if called in self.called_ae_titles:
            assoc.acceptor.ae_title = called
            # A PACS answering our C-MOVE for priors sends to the priors AE title:
            # what arrives on this association is filed as priors.
            assoc.is_prior = called == self.priors_ae_title  # type: ignore[attr-defined]
        else:
            logger.warning(
                "rejected association from %s (%s): called AE title %r is not %s",
                str(request.calling_ae_title).strip() if request is not None else "?",
                assoc.requestor.address,
                called,
                " or ".join(sorted(self.called_ae_titles)),
            )
        return True

    @require_called_aet.setter
    def require_called_aet(self, require_match: bool) -> None:
        """Ignored: pynetdicom sets it, but the called AE title is always checked
        (see the getter)."""
        del require_match


# calling AE -> (facility or None, when it was read): the last answer the database
# gave, used only while the database cannot be reached, so that a known facility's
# C-STOREs get "out of resources" (retry) rather than a permanent rejection.
# Admission itself is read from the database for every association, so an AE title
# added, moved or removed (through the API or the admin) applies to the next
# association: one indexed query, well under a millisecond against the ~2 ms an
# association's negotiation costs (docs/dicom-conformance.md).
_admissions: dict[str, tuple[Facility | None, float]] = {}
_admissions_lock = threading.Lock()
ADMISSION_STALE_SECONDS = 3600.0
_ADMISSION_FIELDS = (
    "pk",
    "is_active",
    "dicom_allowed_networks",
    "dicom_max_object_bytes",
    "dicom_storage_quota_bytes",
    "pacs_ae_title",
)


def _admitted_facility(calling_ae: str) -> Facility | str | None:
    """The facility a calling AE title sends for: the one with this AE title
    (FacilityAETitle, unique), else the one whose PACS has it (a PACS answering our
    C-MOVE for priors); a PACS AE title several facilities share names none of
    them (the reason is returned)."""
    rows = list(
        Facility.objects.filter(
            Q(pk__in=FacilityAETitle.objects.filter(ae_title=calling_ae).values("facility_id"))
            | Q(pacs_ae_title=calling_ae)
        )
        .only(*_ADMISSION_FIELDS)
        .order_by("pk")[:3]
    )
    own = [f for f in rows if f.pacs_ae_title != calling_ae]
    if own:
        return own[0]
    if len(rows) > 1:
        return f"calling AE title {calling_ae!r} is the PACS of several facilities"
    return rows[0] if rows else None


def facility_admission(*, calling_ae: str, address: str) -> Facility | str:
    """The facility an association is admitted for, or the reason it is refused;
    read from the database each time, so admission changes apply at once."""
    now = time.monotonic()
    try:
        found = _admitted_facility(calling_ae)
    except DatabaseError as exc:
        connection.close()
        with _admissions_lock:
            cached = _admissions.get(calling_ae)
        if cached is None or now - cached[1] > ADMISSION_STALE_SECONDS:
            return f"cannot check the facility ({type(exc).__name__})"
        found = cached[0]
    else:
        if not isinstance(found, str):
            with _admissions_lock:
                _admissions[calling_ae] = (found, now)
    if isinstance(found, str):
        return found
    facility = found
    if facility is None:
        return f"calling AE title {calling_ae!r} belongs to no facility"
    if not facility.is_active:
        return f"facility {facility.pk} is inactive"
    if not address_allowed(address, facility.dicom_allowed_networks):
        return f"address {address} is not on facility {facility.pk}'s allow-list"
    return facility


class BoundedAssociationSocket(AssociationSocket):
    """Refuses to read a PDU larger than we accept, so a peer cannot make us buffer
    gigabytes by announcing a huge PDU length."""

    max_pdu_bytes = 262144

    def recv(self, nr_bytes: int) -> bytearray:
        # An A-ASSOCIATE-RQ may exceed the P-DATA limit a little (many contexts).
        if nr_bytes > max(self.max_pdu_bytes + 16, 1 << 20):
            logger.warning("closing an association that announced a %d-byte PDU", nr_bytes)
            self.close()
            return bytearray()
        # pynetdicom reads in 4 KB pieces; a PDU is read here in one buffer
        # (bounded above), which saves a hundred system calls per CT slice.
        if self.socket is None:
            return bytearray()
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        received = 0
        while received < nr_bytes:
            count = self.socket.recv_into(view[received:], nr_bytes - received)
            if count == 0:  # connection closed: return what arrived, as pynetdicom does
                return buffer[:received]
            received += count
        return buffer


def _request_uid(value: Any) -> str:
    return "" if value is None else str(value)


class GatewayAssociation(Association):
    """Answers a C-STORE whose request UIDs are invalid, where pynetdicom would drop it.

    pynetdicom turns an empty Affected SOP Instance UID into None, then finds the
    request invalid and ignores it: the sender waits for an answer that never comes.
    Such a request (and one whose UIDs are blank, too long or not UIDs) is filed
    here as a refusal (0xC260, the data set kept in quarantine) and answered with a
    response that leaves the invalid UID out (PS3.7 makes it optional), so a sender
    can read it and the association goes on.
    """

    def _serve_request(self, msg: Any, context_id: int) -> None:
        if isinstance(msg, C_STORE) and (
            services.request_fault(
                sop_class_uid=_request_uid(msg.AffectedSOPClassUID),
                sop_instance_uid=_request_uid(msg.AffectedSOPInstanceUID),
            )
        ):
            self._refuse_request(msg, context_id)
            return
        super()._serve_request(msg, context_id)

    def _refuse_request(self, req: C_STORE, context_id: int) -> None:
        code = status.OUT_OF_RESOURCES
        staged = req._dataset_path
        if req._dataset_file is not None:
            req._dataset_file.close()
        facility_id = getattr(self, "facility_id", None)
        if isinstance(staged, Path) and facility_id is not None:
            try:
                code = services.instance_receive(
                    storage=default_storage(),
                    staged_path=staged,
                    request=services.Request(
                        facility_id=facility_id,
                        calling_ae=str(self.requestor.ae_title).strip(),
                        peer_address=self.requestor.address,
                        sop_class_uid=_request_uid(req.AffectedSOPClassUID),
                        sop_instance_uid=_request_uid(req.AffectedSOPInstanceUID),
                    ),
                ).status
            except Exception:  # answer the sender whatever happened
                logger.exception("cannot record a C-STORE with invalid request UIDs")
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = req.MessageID
        if is_valid_uid(_request_uid(req.AffectedSOPClassUID)):
            rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
        rsp.Status = code
        self.dimse.send_msg(rsp, context_id)


def _file_meta_tolerating_request_uids(
    *, sop_class_uid: Any, sop_instance_uid: Any, transfer_syntax: Any, **kwargs: Any
) -> Any:
    """pynetdicom writes the staged file's meta group from the request's UIDs, and
    pydicom refuses to write an empty one (the association then dies mid-decode).
    The handler never reads them from the file (it checks the request's own values
    and refuses invalid ones), so an invalid one is written as a placeholder."""
    placeholder = UID("2.25.0")
    return _create_file_meta(
        sop_class_uid=UID(sop_class_uid) if is_valid_uid(str(sop_class_uid or "")) else placeholder,
        sop_instance_uid=(
            UID(sop_instance_uid) if is_valid_uid(str(sop_instance_uid or "")) else placeholder
        ),
        transfer_syntax=transfer_syntax,
        **kwargs,
    )


class BoundedRequestHandler(RequestHandler):
    def _create_association(self) -> Association:
        assoc = super()._create_association()
        # The subclasses add no state, only a bounded recv() and the answer to
        # invalid requests; re-classing the objects pynetdicom just made keeps
        # their state intact.
        assoc.__class__ = GatewayAssociation
        if assoc.dul.socket is not None:
            assoc.dul.socket.__class__ = BoundedAssociationSocket
        return assoc


class ReusePortServer(ThreadedAssociationServer):
    """Several listener processes may bind the same port; the kernel spreads
    connections among them."""

    def server_bind(self) -> None:
        # pynetdicom's own server_bind ignores socketserver's allow_reuse_port,
        # so the option is set here, before it binds.
        if self.socket is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def handle_echo(event: evt.Event) -> int:
    """C-ECHO: the gateway is up."""
    return status.SUCCESS


def handle_store(event: evt.Event, storage: ObjectStorage) -> int:
    """C-STORE: file the staged object (stored, duplicate, new version or quarantined)."""
    assoc = event.assoc
    facility_id = getattr(assoc, "facility_id", None)
    staged = Path(event.dataset_path)
    if facility_id is None:  # cannot happen after admission; refuse rather than guess
        return status.OUT_OF_RESOURCES
    request = event.request
    result = services.instance_receive(
        storage=storage,
        staged_path=staged,
        request=services.Request(
            facility_id=facility_id,
            calling_ae=str(assoc.requestor.ae_title).strip(),
            peer_address=assoc.requestor.address,
            sop_class_uid=str(getattr(request, "AffectedSOPClassUID", "") or ""),
            sop_instance_uid=str(getattr(request, "AffectedSOPInstanceUID", "") or ""),
            max_object_bytes=getattr(assoc, "max_object_bytes", None),
            quota_left_bytes=getattr(assoc, "quota_left_bytes", None),
            is_prior=bool(getattr(assoc, "is_prior", False)),
        ),
    )
    return result.status


def handle_association_end(event: evt.Event) -> None:
    """Release this association thread's database connection."""
    connections.close_all()


def _accept_uid_for_the_handler_to_check(value: Any) -> tuple[bool, str]:
    return True, ""


def start_staging_sweeper(storage: ObjectStorage, *, every_seconds: float = 60.0) -> None:
    """Remove, in a daemon thread of the listener, the partial files aborted transfers
    leave in staging (pynetdicom writes them and keeps them when an association
    aborts) and whatever listener processes that died left (see ``staging_sweep``).
    It runs where the staging folder is, with no database."""

    def sweep() -> None:
        while True:
            time.sleep(every_seconds)
            try:
                services.staging_sweep(
                    storage=storage, max_age_seconds=settings.INGEST_STAGING_MAX_AGE_SECONDS
                )
            except OSError:
                logger.exception("staging sweep failed")

    threading.Thread(target=sweep, name="staging-sweep", daemon=True).start()


def build_ssl_context() -> ssl.SSLContext | None:
    if not (settings.DICOM_TLS_CERT and settings.DICOM_TLS_KEY):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY)
    if settings.DICOM_TLS_CA:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(settings.DICOM_TLS_CA)
    return context


def make_server(
    *,
    host: str,
    port: int,
    ae_title: str,
    storage: ObjectStorage | None = None,
    reuse_port: bool = False,
) -> ThreadedAssociationServer:
    """Build (and bind) the gateway's association server; call ``serve_forever``."""
    storage = storage or default_storage()
    # Received datasets go to a file as they arrive (bounded memory), in a
    # staging folder on the storage's filesystem so filing is a rename.
    _config.STORE_RECV_CHUNKED_DATASET = True
    # pynetdicom validates the UIDs of a DIMSE command while decoding it, and an
    # invalid one (blank, over 64 characters) aborts the association with no status
    # and no record.  The C-STORE handler checks the request's UIDs itself and
    # answers a failure status (0xC260), keeping the data set as evidence.
    _config.VALIDATORS["UI"] = _accept_uid_for_the_handler_to_check
    dimse_messages.create_file_meta = _file_meta_tolerating_request_uids  # type: ignore[attr-defined]
    # Each process stages into a folder of its own, named for its host and pid, so
    # that what a killed process left is known for certain (its pid is gone) and
    # removed now, before this one serves, rather than after the age limit.
    tempfile.tempdir = str(services.staging_dir_of_this_process(storage))
    removed = services.staging_sweep(
        storage=storage, max_age_seconds=settings.INGEST_STAGING_MAX_AGE_SECONDS
    )
    if removed:
        logger.warning("removed %d staged file(s) left by stopped listeners", removed)
    BoundedAssociationSocket.max_pdu_bytes = settings.DICOM_MAX_PDU_BYTES

    ae = GatedApplicationEntity(ae_title=ae_title)
    ae.called_ae_titles = frozenset(
        {ae_title.strip(), *settings.DICOM_AE_TITLE_ALIASES, settings.DICOM_PRIORS_AE_TITLE}
    )
    ae.priors_ae_title = settings.DICOM_PRIORS_AE_TITLE
    ae.maximum_pdu_size = settings.DICOM_MAX_PDU_BYTES
    ae.maximum_associations = 64
    ae.network_timeout = 60
    ae.dimse_timeout = 60
    ae.acse_timeout = 30
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)

    start_staging_sweeper(storage)
    handlers: list[Any] = [
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [storage]),
        (evt.EVT_RELEASED, handle_association_end),
        (evt.EVT_ABORTED, handle_association_end),
    ]
    return ae.make_server(
        (host, port),
        ae_title=ae_title,
        evt_handlers=handlers,
        ssl_context=build_ssl_context(),
        server_class=ReusePortServer if reuse_port else ThreadedAssociationServer,
        request_handler=BoundedRequestHandler,
    )
