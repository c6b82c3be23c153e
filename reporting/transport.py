"""Sending one result message to a facility: HL7 v2 over MLLP, or FHIR over HTTPS.

Network only: no database, no transaction.  Each function makes one attempt and
says how it went; what to do next (retry later, give up, mark sent) is decided by
reporting.services.delivery, which records every attempt.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import urllib.error
import urllib.parse
import urllib.request

from reporting.messages import hl7_unescape, parse_ack

# MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 2).
START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
MAX_ACK_BYTES = 1 << 20
DETAIL_LIMIT = 4000


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One attempt: accepted, or refused for good (``retry`` False), or worth retrying."""

    accepted: bool
    retry: bool
    detail: str
    kind: str  # "accepted" | "nak" | "rejected" | "error" (DeliveryAttempt.Outcome)
    # What the application answered, when it answered: HL7 MSA-1 (AA/AE/AR, CA/CE/CR),
    # MSA-2 (the control id acknowledged) and MSA-3 (or the ERR's text); for FHIR the
    # HTTP status and the OperationOutcome's text.
    ack_code: str = ""
    ack_control_id: str = ""
    ack_text: str = ""
    http_status: int | None = None


def _error(detail: str) -> Outcome:
    return Outcome(accepted=False, retry=True, detail=detail[:DETAIL_LIMIT], kind="error")


def mllp_frame(message: str) -> bytes:
    return START_BLOCK + message.encode("utf-8") + END_BLOCK


def mllp_send(*, host: str, port: int, message: str, control_id: str, timeout: float) -> Outcome:
    """Send one framed HL7 message and read its ACK: AA/CA accepted, AR/CR rejected,
    AE/CE, a wrong MSA-2, a closed connection or a timeout are retried later."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(mllp_frame(message))
            received = b""
            while END_BLOCK not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                if len(received) > MAX_ACK_BYTES:
                    return _error("The acknowledgement is larger than 1 MiB.")
    except OSError as exc:  # refused, unreachable, reset, timed out
        return _error(f"{type(exc).__name__}: {exc}")
    start, end = received.find(START_BLOCK), received.find(END_BLOCK)
    if start < 0 or end < start:
        return _error(f"No framed acknowledgement (got {len(received)} bytes).")
    text = received[start + 1 : end].decode("utf-8", errors="replace")
    try:
        ack = parse_ack(text)
    except ValueError as exc:
        return _error(f"{exc} {text!r}")
    detail = text.replace("\r", "\n").strip()[:DETAIL_LIMIT]
    answered = Outcome(
        accepted=False,
        retry=True,
        detail=detail,
        kind="nak",
        ack_code=ack.code[:2],
        ack_control_id=ack.control_id[:DETAIL_LIMIT],
        ack_text=hl7_unescape(ack.text)[:DETAIL_LIMIT],
    )
    if ack.control_id != control_id:
        why = f"The ACK answers message {ack.control_id!r}, not {control_id!r}: {detail}"
        return dataclasses.replace(answered, detail=why[:DETAIL_LIMIT], kind="error")
    # HL7 acknowledgement semantics: AA/CA accepted; AR/CR the receiver refuses the
    # message itself (type, version, processing id, content), so the same content
    # will be refused again: not retried, a person must look; AE/CE the receiver
    # failed to process it (often its own trouble): retried with backoff.
    if ack.accepted:
        return dataclasses.replace(answered, accepted=True, retry=False, kind="accepted")
    if ack.rejected:
        return dataclasses.replace(answered, retry=False, kind="rejected")
    return answered


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fhir_url_refusal(url: str) -> str | None:
    """Why ``url`` is no place to send patient data, or None: HTTPS only (plain HTTP
    is allowed to this machine's loopback, for a local relay and for tests)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return None
    return "A FHIR endpoint must be an https:// URL."


def operation_outcome_text(body: str) -> str:
    """The human text of a FHIR OperationOutcome answer (each issue's details.text or
    diagnostics, "; "-joined), or "" when the body is not one."""
    try:
        outcome = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return ""
    texts = []
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        text = (details.get("text") if isinstance(details, dict) else None) or issue.get(
            "diagnostics"
        )
        if isinstance(text, str) and text.strip():
            severity = issue.get("severity")
            texts.append(f"{severity}: {text.strip()}" if isinstance(severity, str) else text)
    return "; ".join(texts)


def fhir_post(*, url: str, body: str, timeout: float) -> Outcome:
    """POST one DiagnosticReport: 2xx accepted; 408, 429, 5xx and network errors are
    retried later; any other answer is a refusal."""
    refusal = fhir_url_refusal(url)
    if refusal is not None:
        return Outcome(accepted=False, retry=False, detail=refusal, kind="rejected")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above (https or loopback)
        url,
        data=body.encode("utf-8"),
        method="POST",
        headers={
            "Content-Type": "application/fhir+json; charset=utf-8",
            "Accept": "application/fhir+json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            text = response.read(MAX_ACK_BYTES).decode("utf-8", errors="replace")
            detail = f"HTTP {response.status} {response.headers.get('Location', '')}\n{text}"
            return Outcome(
                accepted=True,
                retry=False,
                detail=detail.strip()[:DETAIL_LIMIT],
                kind="accepted",
                ack_text=operation_outcome_text(text)[:DETAIL_LIMIT],
                http_status=response.status,
            )
    except urllib.error.HTTPError as exc:
        text = exc.read(MAX_ACK_BYTES).decode("utf-8", errors="replace")
        detail = f"HTTP {exc.code}\n{text}".strip()[:DETAIL_LIMIT]
        exc.close()
        retry = exc.code in (408, 429) or exc.code >= 500
        return Outcome(
            accepted=False,
            retry=retry,
            detail=detail,
            kind="nak" if retry else "rejected",
            ack_text=operation_outcome_text(text)[:DETAIL_LIMIT],
            http_status=exc.code,
        )
    except (urllib.error.URLError, OSError) as exc:
        return _error(f"{type(exc).__name__}: {exc}")
