"""Send C-STOREs byte for byte: the data set as given and a request of our own making.

pynetdicom's ``send_c_store`` re-encodes what it is handed or takes the request
from a file's meta information, and it refuses an empty or overlong Affected
SOP Instance UID before anything is sent.  A fuzzer must send exactly the bytes
it made, and requests a well-behaved peer never would, so here the command set
(PS3.7 9.3.1.1, implicit VR little endian) is written by hand and the message is
cut into P-DATA-TF values as pynetdicom does (PS3.8 Annex E), then handed to
the association's DUL; the response is read from its DIMSE queue.  While we
wait, the association's reactor is paused, as ``send_c_store`` itself does, so
it cannot take the response off the queue first.

A request the gateway never answers is told apart from a slow one by a C-ECHO
sent after a short wait: pynetdicom serves an association's requests in order,
so an echo response arriving before the store response means none will come.
"""

from __future__ import annotations

import contextlib
import enum
import queue
import socket
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

from pydicom import config as pydicom_config
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import P_DATA

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
C_STORE_RQ = 0x0001
C_ECHO_RQ = 0x0030
NO_DATA_SET = 0x0101
PRIORITY_MEDIUM = 0x0000


class Lost(enum.Enum):
    """A C-STORE that got no status."""

    ABORTED = "aborted"  # the association was aborted or closed before the response
    NO_RESPONSE = "no response"  # the peer went on serving but never answered
    NO_CONTEXT = "no context"  # the peer accepted no context for the class and syntax

    def __str__(self) -> str:
        return self.value


Outcome = int | Lost


def _any_uid(value: Any) -> tuple[bool, str]:
    """A UID validator that lets every value through: we read what the peer sent."""
    return True, ""


class AssociationRefused(RuntimeError):
    """The gateway would not associate at all (wrong AE titles, not listening)."""


def _element(element: int, value: bytes) -> bytes:
    """A command element (group 0000) in implicit VR little endian."""
    return b"\0\0" + element.to_bytes(2, "little") + len(value).to_bytes(4, "little") + value


def _ui(uid: str) -> bytes:
    raw = uid.encode("latin-1")
    return raw + b"\0" if len(raw) % 2 else raw


def _us(value: int) -> bytes:
    return value.to_bytes(2, "little")


def command_set(fields: list[tuple[int, bytes]]) -> bytes:
    """A command set: the group length, then the given (element, value) pairs."""
    body = b"".join(_element(element, value) for element, value in sorted(fields))
    return _element(0x0000, len(body).to_bytes(4, "little")) + body


def store_request(*, message_id: int, sop_class: str, sop_instance: str) -> bytes:
    """A C-STORE-RQ command set (PS3.7 Table 9.3-1), UIDs exactly as given."""
    return command_set(
        [
            (0x0002, _ui(sop_class)),
            (0x0100, _us(C_STORE_RQ)),
            (0x0110, _us(message_id)),
            (0x0700, _us(PRIORITY_MEDIUM)),
            (0x0800, _us(0x0001)),  # a data set follows
            (0x1000, _ui(sop_instance)),
        ]
    )


def echo_request(*, message_id: int) -> bytes:
    """A C-ECHO-RQ command set (PS3.7 Table 9.3-12)."""
    return command_set(
        [
            (0x0002, _ui(VERIFICATION)),
            (0x0100, _us(C_ECHO_RQ)),
            (0x0110, _us(message_id)),
            (0x0800, _us(NO_DATA_SET)),
        ]
    )


def p_data(context_id: int, command: bytes, dataset: bytes, max_pdu: int) -> Iterator[P_DATA]:
    """The message as P-DATA primitives, one presentation data value each, no larger
    than the peer's maximum PDU (6 bytes of each go to the PDV's header)."""
    step = max_pdu - 6 if max_pdu else max(len(command), len(dataset), 1)
    for payload, is_command in ((command, True), (dataset, False)):
        if not payload:
            continue
        chunks = [payload[i : i + step] for i in range(0, len(payload), step)]
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            header = (0x01 if is_command else 0x00) | (0x02 if last else 0x00)
            primitive = P_DATA()
            primitive.presentation_data_value_list.append((context_id, bytes([header]) + chunk))
            yield primitive


class StoreSender:
    """One association at a time to the gateway, reopened after an abort.

    Presentation contexts are asked for every pair of the given abstract and
    transfer syntaxes (one transfer syntax per context, so each pair is accepted
    or not on its own), plus Verification.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        calling_ae: str,
        called_ae: str = "TELERAD",
        abstract_syntaxes: Iterable[str],
        transfer_syntaxes: Iterable[str],
        patience: float = 0.5,
        timeout: float = 60.0,
    ) -> None:
        self.host, self.port = host, port
        self.calling_ae, self.called_ae = calling_ae, called_ae
        self.pairs = [(a, t) for a in abstract_syntaxes for t in transfer_syntaxes]
        if len(self.pairs) + 1 > 128:
            raise ValueError(f"{len(self.pairs) + 1} presentation contexts (at most 128)")
        self.patience = patience  # before a C-ECHO asks whether an answer is coming
        self.timeout = timeout  # for any answer at all
        self.associations = 0  # opened so far
        self._assoc: Association | None = None
        self._socket: socket.socket | None = None
        self._contexts: dict[tuple[str, str], int] = {}
        self._echo_context = 0
        self._message_id = 0
        self._validation: Any = None
        self._ui_validator: Any = None

    # --- lifetime --------------------------------------------------------------------

    def __enter__(self) -> StoreSender:
        # Responses echo our (deliberately bad) UIDs back; pydicom must not warn about
        # them while decoding, or a test's warnings-as-errors would abort our side.
        self._validation = pydicom_config.settings.reading_validation_mode
        pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
        # Nor may pynetdicom refuse to read a response that echoes an overlong UID
        # (it would abort the association itself and blame the gateway for it).
        self._ui_validator = pynetdicom_config.VALIDATORS["UI"]
        pynetdicom_config.VALIDATORS["UI"] = _any_uid
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
        if self._validation is not None:
            pydicom_config.settings.reading_validation_mode = self._validation
        if self._ui_validator is not None:
            pynetdicom_config.VALIDATORS["UI"] = self._ui_validator

    def close(self) -> None:
        """Release the association (or abort it, if release does not work)."""
        assoc, self._assoc = self._assoc, None
        if assoc is None:
            return
        if assoc.is_established:
            try:
                assoc.release()
            except Exception:
                assoc.abort()
        self._drop(assoc)

    def _open(self) -> Association:
        if self._assoc is not None and self._assoc.is_established:
            return self._assoc
        self.close()
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = self.timeout
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        ae.add_requested_context(VERIFICATION, IMPLICIT_LE)
        for abstract, syntax in self.pairs:
            ae.add_requested_context(abstract, syntax)
        assoc = ae.associate(self.host, self.port, ae_title=self.called_ae)
        if not assoc.is_established:
            raise AssociationRefused(
                f"{self.called_ae} at {self.host}:{self.port} refused {self.calling_ae}"
            )
        self.associations += 1
        self._contexts = {}
        for cx in assoc.accepted_contexts:
            key = (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
            if cx.context_id is not None:
                if key[0] == VERIFICATION:
                    self._echo_context = cx.context_id
                self._contexts[key] = cx.context_id
        self._assoc = assoc
        # pynetdicom skips close() when shutdown() fails on a connection the peer has
        # already cut, and drops its reference: we keep one, to close it ourselves.
        self._socket = assoc.dul.socket.socket if assoc.dul.socket else None
        self._message_id = 0
        return assoc

    def _next_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    # --- exchanges ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _paused(self, assoc: Association) -> Iterator[None]:
        """Hold the association's reactor, so responses stay on the queue for us."""
        assoc._reactor_checkpoint.clear()
        deadline = time.monotonic() + 5
        while not assoc._is_paused and assoc.is_alive() and time.monotonic() < deadline:
            time.sleep(0.0001)
        try:
            yield
        finally:
            assoc._reactor_checkpoint.set()

    def _answer(self, assoc: Association, message_ids: set[int], timeout: float) -> Any:
        """The next response to one of ``message_ids``: the primitive, None on timeout,
        or Lost.ABORTED when the association ends."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                _, primitive = assoc.dimse.msg_queue.get(timeout=min(left, 0.05))
            except queue.Empty:
                # An abort by either side reaches the user queue, not this one.
                if assoc.acse.is_aborted() or not assoc.dul.is_alive():
                    return Lost.ABORTED
                continue
            if primitive is None:  # pynetdicom's signal for an abort or a closed connection
                return Lost.ABORTED
            if getattr(primitive, "MessageIDBeingRespondedTo", None) in message_ids:
                return primitive
            # A late answer to an earlier request: not this one's.

    def send(
        self, *, dataset: bytes, transfer_syntax: str, sop_class: str, sop_instance: str
    ) -> Outcome:
        """Send one C-STORE; its status, or how it was lost."""
        if not dataset:
            raise ValueError("an empty data set cannot be sent (no P-DATA value would carry it)")
        assoc = self._open()
        context_id = self._contexts.get((sop_class, transfer_syntax))
        if context_id is None:
            return Lost.NO_CONTEXT
        store_id = self._next_id()
        command = store_request(message_id=store_id, sop_class=sop_class, sop_instance=sop_instance)
        max_pdu = int(assoc.acceptor.maximum_length or 0)
        broken = False
        with self._paused(assoc):
            for primitive in p_data(context_id, command, dataset, max_pdu):
                assoc.dul.send_pdu(primitive)
            answer = self._answer(assoc, {store_id}, self.patience)
            if answer is None:
                echo_id = self._next_id()
                for primitive in p_data(
                    self._echo_context, echo_request(message_id=echo_id), b"", max_pdu
                ):
                    assoc.dul.send_pdu(primitive)
                answer = self._answer(assoc, {store_id, echo_id}, self.timeout)
                if answer is not None and not isinstance(answer, Lost):
                    if answer.MessageIDBeingRespondedTo == echo_id:
                        answer = Lost.NO_RESPONSE
                    else:  # the store was only slow: its echo answer is still to come
                        broken = not hasattr(self._answer(assoc, {echo_id}, self.timeout), "Status")
        if broken:  # answered, but the association did not survive the echo
            assoc.abort()
            self._drop(assoc)
        if answer is None:
            # Neither answered within the timeout: give the association up.
            assoc.abort()
            self._drop(assoc)
            return Lost.NO_RESPONSE
        if isinstance(answer, Lost):
            if answer is Lost.ABORTED:
                self._drop(assoc)
            return answer  # no response: the association itself still serves
        status = getattr(answer, "Status", None)
        return Lost.ABORTED if status is None else int(status)

    def _drop(self, assoc: Association) -> None:
        """Forget an ended association: wait for its thread and close its socket."""
        if assoc.is_alive():
            assoc.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._assoc = None

    def echo(self) -> Outcome:
        """A C-ECHO over the current (or a new) association."""
        assoc = self._open()
        message_id = self._next_id()
        max_pdu = int(assoc.acceptor.maximum_length or 0)
        with self._paused(assoc):
            for primitive in p_data(
                self._echo_context, echo_request(message_id=message_id), b"", max_pdu
            ):
                assoc.dul.send_pdu(primitive)
            answer = self._answer(assoc, {message_id}, self.timeout)
        if answer is None:
            return Lost.NO_RESPONSE
        if isinstance(answer, Lost):
            if answer is Lost.ABORTED:
                self._drop(assoc)
            return answer  # no response: the association itself still serves
        return int(answer.Status)
