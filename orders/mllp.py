"""The HL7 listener: MLLP over TCP (optionally TLS), a thread per connection.

MLLP frames a message as ``0x0B message 0x1C 0x0D``; a connection carries any
number of frames, each answered before the next is read.  Every frame gets an
answer, whatever it holds: a frame is stored and answered by
``orders.services.messages.message_receive`` (the ACK leaves only after the message
and its effects are committed); when even storing fails (the database is down) the
sender is told AR, "send again", from the header alone.

Bounds: a frame larger than ``HL7_MAX_MESSAGE_BYTES`` is read to its end but kept
cut to the limit and refused; a connection silent for ``HL7_READ_TIMEOUT_SECONDS``
is closed (a frame left open is answered AR first); at most ``HL7_MAX_CONNECTIONS``
connections are served at once, more are closed at once.

Bytes outside a frame: CR/LF between frames are ignored; anything else is read as
a frame whose start block is missing, and refused at its end block, so a sender that
forgets the framing is still answered.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connections

from orders import hl7
from orders.services.messages import Receipt, message_receive

logger = logging.getLogger("orders.listener")

_WHITESPACE = b"\r\n \t"
# How often a waiting connection looks at the stop flag (graceful stop).
_POLL_SECONDS = 0.5

Receive = Callable[..., Receipt]


class _Frame:
    """The frame being read: its first bytes (up to the limit), its full size, and
    what is wrong with its framing."""

    def __init__(self, *, started: bool) -> None:
        self.data = bytearray()
        self.size = 0
        self.truncated = False
        self.missing_start = not started
        self.inner_start = False

    def add(self, chunk: bytes, limit: int) -> None:
        if hl7.SB in chunk:
            self.inner_start = True
        self.size += len(chunk)
        room = limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated = True

    def problem(self, limit: int) -> hl7.Problem | None:
        if self.truncated:
            return hl7.Problem(
                "AR", f"message of {self.size} bytes is larger than the {limit}-byte limit"
            )
        if self.missing_start:
            return hl7.Problem("AR", "frame without its MLLP start block (0x0B)", "MSH-1")
        if self.inner_start:
            return hl7.Problem("AR", "a second MLLP start block (0x0B) inside the frame", "MSH-1")
        return None


def answer_of(
    data: bytes | bytearray,
    *,
    peer: str,
    size: int,
    truncated: bool,
    problem: hl7.Problem | None,
    receive: Receive,
) -> bytes:
    """The framed ACK for one frame: stored and answered, or, when it cannot be
    stored, refused from its header with a request to send it again."""
    try:
        receipt = receive(
            data=bytes(data),
            peer_address=peer,
            size_bytes=size,
            truncated=truncated,
            frame_problem=problem,
        )
        if receipt.outcome != "AA":
            logger.info(
                "HL7 from %s answered %s (message %s)", peer, receipt.outcome, receipt.message_id
            )
        text, codec = receipt.ack, receipt.encoding
    except Exception:
        logger.exception("cannot store an HL7 message from %s; answering AR", peer)
        for alias in connections:  # a broken connection reconnects for the next one
            connections[alias].close()
        try:
            header = hl7.read_header(hl7.normalise_segments(bytes(data).decode("latin-1")))[0]
        except Exception:
            header = hl7.Header()
        text = hl7.build_ack(
            header,
            code="AR",
            text="the message could not be stored now; send it again",
            error_code=hl7.ERR_INTERNAL,
            sending_application=settings.HL7_SENDING_APPLICATION,
        )
        codec = "utf-8"
    return hl7.SB + text.encode(codec or "utf-8", errors="replace") + hl7.EB + hl7.CR


def serve_connection(
    sock: socket.socket,
    peer: str,
    *,
    receive: Receive = message_receive,
    stopping: threading.Event | None = None,
) -> None:
    """Read frames from one connection and answer each, until the peer closes, the
    connection stays silent past the read timeout, or the listener stops."""
    limit = settings.HL7_MAX_MESSAGE_BYTES
    timeout = settings.HL7_READ_TIMEOUT_SECONDS
    stopping = stopping or threading.Event()
    sock.settimeout(min(_POLL_SECONDS, timeout))
    frame: _Frame | None = None
    last_read = time.monotonic()

    def finish(current: _Frame) -> None:
        reply = answer_of(
            current.data,
            peer=peer,
            size=current.size,
            truncated=current.truncated,
            problem=current.problem(limit),
            receive=receive,
        )
        sock.sendall(reply)

    while True:
        if stopping.is_set() and frame is None:
            return
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if time.monotonic() - last_read < timeout:
                continue
            if frame is not None:
                logger.info("HL7 frame from %s left open for %.0f s; answering it", peer, timeout)
                _answer_open_frame(sock, peer, frame, limit, receive, "no end block in time")
            return
        except (OSError, ssl.SSLError):
            return
        last_read = time.monotonic()
        if not chunk:
            if frame is not None and (frame.size or frame.missing_start):
                # The peer is gone; the message is still kept with the reason.
                _answer_open_frame(sock, peer, frame, limit, receive, "connection closed")
            return
        view = memoryview(chunk)
        position = 0
        while position < len(chunk):
            if frame is None:
                start = chunk.find(hl7.SB, position)
                junk = bytes(view[position : start if start >= 0 else len(chunk)])
                if junk.strip(_WHITESPACE):
                    frame = _Frame(started=False)  # a frame without its start block
                    continue
                if start < 0:
                    break
                frame = _Frame(started=True)
                position = start + 1
                continue
            end = chunk.find(hl7.EB, position)
            if end < 0:
                frame.add(bytes(view[position:]), limit)
                break
            frame.add(bytes(view[position:end]), limit)
            position = end + 1
            if position < len(chunk) and chunk[position] == 0x0D:
                position += 1
            current, frame = frame, None
            try:
                finish(current)
            except OSError:
                return


def _answer_open_frame(
    sock: socket.socket, peer: str, frame: _Frame, limit: int, receive: Receive, why: str
) -> None:
    """A frame that never ended: stored (AR, with why) and answered if the peer listens."""
    problem = frame.problem(limit) if frame.truncated else None
    problem = problem or hl7.Problem("AR", f"frame not ended ({why}): the message is incomplete")
    reply = answer_of(
        frame.data,
        peer=peer,
        size=frame.size,
        truncated=frame.truncated,
        problem=problem,
        receive=receive,
    )
    with contextlib.suppress(OSError):
        sock.sendall(reply)


class Hl7Handler(socketserver.BaseRequestHandler):
    server: Hl7Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        peer = str(self.client_address[0])
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.server.ssl_context is not None:
                sock.settimeout(settings.HL7_READ_TIMEOUT_SECONDS)
                try:
                    sock = self.server.ssl_context.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    logger.warning("TLS handshake with %s failed: %s", peer, exc)
                    return
            serve_connection(sock, peer, receive=self.server.receive, stopping=self.server.stopping)
        finally:
            # This thread's database connections end with its connection.
            connections.close_all()
            if sock is not self.request:
                with contextlib.suppress(OSError):
                    sock.close()


class Hl7Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A thread per connection, at most ``max_connections`` at once; ``stop``
    lets every connection finish the frame it is on, then close."""

    allow_reuse_address = True
    daemon_threads = False  # server_close waits for the connections (graceful stop)
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 64,
        receive: Receive = message_receive,
        reuse_port: bool = False,
    ) -> None:
        self.reuse_port = reuse_port
        self.ssl_context = ssl_context
        self.receive = receive
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, Hl7Handler)

    def server_bind(self) -> None:
        if self.reuse_port:  # several listener processes share the port
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            logger.warning(
                "HL7 connection from %s refused: too many connections", client_address[0]
            )
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def stop(self) -> None:
        self.stopping.set()


def build_ssl_context() -> ssl.SSLContext | None:
    """TLS as the DICOM gateway does it: a certificate and key turn it on, a CA
    requires client certificates."""
    if not (settings.HL7_TLS_CERT and settings.HL7_TLS_KEY):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.HL7_TLS_CERT, settings.HL7_TLS_KEY)
    if settings.HL7_TLS_CA:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(settings.HL7_TLS_CA)
    return context


def make_server(
    *, host: str, port: int, receive: Receive = message_receive, reuse_port: bool = False
) -> Hl7Server:
    """Build (and bind) the listener; call ``serve_forever``."""
    return Hl7Server(
        (host, port),
        ssl_context=build_ssl_context(),
        max_connections=settings.HL7_MAX_CONNECTIONS,
        receive=receive,
        reuse_port=reuse_port,
    )
