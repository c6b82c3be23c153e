"""A bare MLLP echo server: the listener's framing (0x0B ... 0x1C 0x0D, a thread per
connection, frames answered in turn), an ACK made without work (MSH-10 echoed into a
fixed answer), no parsing, no database.  The baseline of ``bench.hl7``.

    python -m bench.hl7.echo --port 2576
"""

from __future__ import annotations

import argparse
import socket
import socketserver

SB, EB, CR = b"\x0b", b"\x1c", b"\r"
ACK = b"MSH|^~\\&|ECHO||||20260101000000||ACK^O01^ACK|E1|P|2.5.1\rMSA|AA|%s\r"


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            pending += chunk
            while (end := pending.find(EB + CR)) >= 0:
                frame, pending = pending[:end], pending[end + 2 :]
                fields = frame.split(b"|", 10)
                control = fields[9] if len(fields) > 9 else b""
                sock.sendall(SB + ACK % control + EB + CR)


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with EchoServer((args.host, args.port), EchoHandler) as server:
        print(f"MLLP echo on {args.host}:{args.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
