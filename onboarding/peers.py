"""Connection tests against a facility's peers: a C-ECHO to its PACS, a test ORU^R01 to
its MLLP result endpoint, a GET of a FHIR endpoint's CapabilityStatement.

Network only: no database, so no caller can hold a transaction open across a peer's
answer.  Each test makes one bounded attempt and says how it went; it never raises for
what the peer did (refused, timed out, answered nonsense).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from hl7apy.core import Message
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from reporting.messages import hl7_escape, parse_ack
from reporting.transport import fhir_url_refusal, mllp_send

SUCCESS = 0x0000
DETAIL_LIMIT = 2000
MAX_METADATA_BYTES = 4 << 20
HL7_VERSION = "2.5.1"


@dataclass(frozen=True)
class PeerResult:
    """One connection test: whether the peer answered as it should, its answer's code
    (the DICOM status as 0xNNNN, the HL7 ACK code, the HTTP status), what it said or
    the network error, and how long it took."""

    ok: bool
    code: str
    detail: str
    elapsed_ms: int

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "code": self.code,
            "detail": self.detail,
            "elapsed_ms": self.elapsed_ms,
        }


def _since(start: float) -> int:
    return round((time.monotonic() - start) * 1000)


def _connect_error(host: str, port: int, timeout: float) -> str:
    """Why a TCP connection to host:port fails, or "" when it opens (and is closed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except OSError as exc:  # refused, unreachable, unknown host, timed out
        return f"{type(exc).__name__}: {exc}"


def dicom_echo(
    *, calling_ae: str, called_ae: str, host: str, port: int, timeout: float
) -> PeerResult:
    """A C-ECHO (Verification) from ``calling_ae`` to the PACS, each network step
    bounded by ``timeout``: ok only on status 0x0000."""
    start = time.monotonic()
    # The TCP connection first, on its own: pynetdicom leaves the socket of a failed
    # connection unclosed (and says why only in its log).
    error = _connect_error(host, port, timeout)
    if error:
        return PeerResult(False, "network", f"{host}:{port}: {error}", _since(start))
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    try:
        assoc = ae.associate(host, port, ae_title=called_ae)
        if not assoc.is_established:
            if assoc.is_rejected:
                detail = f"{called_ae} at {host}:{port} rejected the association"
                primitive = assoc.acceptor.primitive
                if primitive is not None:
                    detail += (
                        f" ({primitive.result_str}, {primitive.source_str}: {primitive.reason_str})"
                    )
                return PeerResult(False, "rejected", detail, _since(start))
            return PeerResult(
                False,
                "aborted",
                f"{called_ae} at {host}:{port} accepted the connection but no association "
                "(aborted, or no answer in time)",
                _since(start),
            )
        try:
            status = assoc.send_c_echo()
        finally:
            if assoc.is_established:
                assoc.release()
            else:
                assoc.abort()
        if "Status" not in status:
            return PeerResult(
                False, "no-answer", "No C-ECHO response (timed out or aborted).", _since(start)
            )
        code = int(status.Status)
        return PeerResult(
            code == SUCCESS,
            f"0x{code:04X}",
            f"C-ECHO {called_ae} at {host}:{port}: status 0x{code:04X}"
            + (" (success)" if code == SUCCESS else ""),
            _since(start),
        )
    finally:
        ae.shutdown()


def _ts(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S%z")


def build_test_oru(
    *,
    control_id: str,
    sending_application: str,
    sending_facility: str,
    receiving_application: str,
    receiving_facility: str,
    now: dt.datetime,
) -> str:
    """An HL7 v2.5.1 ORU^R01 that says it is a test: MSH-11 processing id "T", a
    patient named TEST^CONNECTION and one text observation saying so (no patient's
    data, nothing a receiving system should file as a result)."""
    message = Message("ORU_R01", version=HL7_VERSION)
    msh = message.msh
    msh.msh_3 = hl7_escape(sending_application)
    msh.msh_4 = hl7_escape(sending_facility)
    msh.msh_5 = hl7_escape(receiving_application)
    msh.msh_6 = hl7_escape(receiving_facility)
    msh.msh_7 = _ts(now)
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = hl7_escape(control_id)
    msh.msh_11 = "T"  # HL7 table 0103: training/test, not production
    msh.msh_18 = "UNICODE UTF-8"
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    pid = result.add_group("ORU_R01_PATIENT").pid
    pid.pid_1 = "1"
    pid.pid_3 = "TEST^^^TEST^MR"
    pid.pid_5 = "TEST^CONNECTION"
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    obr = order.obr
    obr.obr_1 = "1"
    obr.obr_3 = hl7_escape(control_id)
    obr.obr_4 = "TEST^Connection test^L"
    obr.obr_7 = _ts(now)
    obr.obr_25 = "F"
    obx = order.add_group("ORU_R01_OBSERVATION").obx
    obx.obx_1 = "1"
    obx.obx_2 = "TX"
    obx.obx_3 = "TEST^Connection test^L"
    obx.obx_5 = "Connection test of the result interface; not a result. Do not file."
    obx.obx_11 = "F"
    if not message.validate():  # pragma: no cover - hl7apy raises on a bad structure
        raise ValueError("The test ORU^R01 does not follow the HL7 2.5.1 structure.")
    return str(message.to_er7()) + "\r"


def mllp_test(*, host: str, port: int, message: str, control_id: str, timeout: float) -> PeerResult:
    """Send a test message over MLLP (reporting's transport) and read its ACK: ok on
    AA/CA; the code is MSA-1, or "network" when no acknowledgement came."""
    start = time.monotonic()
    outcome = mllp_send(
        host=host, port=port, message=message, control_id=control_id, timeout=timeout
    )
    code = str(getattr(outcome, "ack_code", "") or "")
    if not code:
        try:
            code = parse_ack(outcome.detail).code or "?"
        except ValueError:
            code = "network"
    detail = outcome.detail[:DETAIL_LIMIT]
    return PeerResult(outcome.accepted, code, f"{host}:{port}: {detail}", _since(start))


def fhir_base(url: str) -> str:
    """The FHIR server's base: the endpoint's URL without its resource type."""
    base = url.rstrip("/")
    if base.rsplit("/", 1)[-1] == "DiagnosticReport":
        base = base.rsplit("/", 1)[0]
    return base


def fhir_metadata(*, url: str, timeout: float) -> PeerResult:
    """GET the server's CapabilityStatement (``[base]/metadata``, FHIR's connectivity
    check; nothing is written there): ok on HTTP 200 with a CapabilityStatement.  The
    transport's URL rule applies (HTTPS, or HTTP to this machine's loopback)."""
    start = time.monotonic()
    refusal = fhir_url_refusal(url)
    if refusal is not None:
        return PeerResult(False, "refused", refusal, _since(start))
    target = fhir_base(url) + "/metadata"
    if urllib.parse.urlsplit(target).scheme not in ("http", "https"):  # pragma: no cover
        return PeerResult(False, "refused", "Not an HTTP URL.", _since(start))
    request = urllib.request.Request(  # noqa: S310 - scheme checked above (https or loopback)
        target, method="GET", headers={"Accept": "application/fhir+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = response.status
            body = response.read(MAX_METADATA_BYTES)
    except urllib.error.HTTPError as exc:
        exc.close()
        return PeerResult(False, str(exc.code), f"GET {target}: HTTP {exc.code}", _since(start))
    except (urllib.error.URLError, OSError) as exc:
        return PeerResult(False, "network", f"GET {target}: {exc}", _since(start))
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict) or document.get("resourceType") != "CapabilityStatement":
        return PeerResult(
            False,
            str(status),
            f"GET {target}: HTTP {status}, not a CapabilityStatement",
            _since(start),
        )
    version = document.get("fhirVersion", "?")
    return PeerResult(
        True, str(status), f"GET {target}: CapabilityStatement, FHIR {version}", _since(start)
    )
