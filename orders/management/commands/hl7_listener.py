"""Run the HL7 listener: ``manage.py hl7_listener [--host 127.0.0.1] [--port 2575]``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

logger = logging.getLogger("orders.listener")


class Command(BaseCommand):
    help = "Accept HL7 v2 orders and patient updates over MLLP from the facilities."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            default=settings.HL7_LISTEN_HOST,
            help="The interface to bind (default HL7_LISTEN_HOST: 127.0.0.1 in development; "
            "required in production, where 0.0.0.0 names every interface).",
        )
        parser.add_argument("--port", type=int, default=settings.HL7_PORT)
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="Listener processes sharing the port (SO_REUSEPORT); each runs its own "
            "interpreter, so messages are parsed and applied on several cores.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from orders.mllp import make_server

        host, port = options["host"], options["port"]
        if not host:
            raise CommandError(
                "Refusing to start in production: name the interface the HL7 listener "
                "binds (HL7_LISTEN_HOST or --host; 0.0.0.0 for every interface)."
            )
        # The listener's PostgreSQL connections are named in pg_stat_activity.
        for alias in connections:
            params = connections.settings[alias]
            if params["ENGINE"].endswith("postgresql"):
                name = settings.HL7_LISTENER_DB_APPLICATION_NAME[:63]
                params.setdefault("OPTIONS", {})["application_name"] = name
        connections.close_all()

        processes = max(1, options["processes"])
        if processes == 1:
            self._serve(make_server(host=host, port=port), processes)
            return
        # Bind once here so that a busy port fails at once; each child binds its own
        # socket to the same port (the kernel spreads connections among them).
        make_server(host=host, port=port, reuse_port=True).server_close()
        children: set[int] = set()
        stopping = False

        def spawn() -> None:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    self._serve(make_server(host=host, port=port, reuse_port=True), processes)
                except BaseException:
                    code = 1
                    logger.exception("HL7 listener process %d failed", os.getpid())
                finally:
                    os._exit(code)
            children.add(pid)

        def stop_children(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop_children)
        signal.signal(signal.SIGINT, stop_children)
        for _ in range(processes):
            spawn()
        # Supervise: a process that dies while the listener runs is replaced.
        while children:
            try:
                pid, _ = os.wait()
            except ChildProcessError:
                break
            children.discard(pid)
            if not stopping:
                self.stderr.write(f"HL7 listener process {pid} exited; restarting")
                time.sleep(1)
                spawn()
        self.stdout.write("HL7 listener stopped")

    def _serve(self, server: Any, processes: int) -> None:
        tls = " (TLS)" if server.ssl_context is not None else ""
        host, port = server.server_address[:2]
        self.stdout.write(f"HL7 listener on {host}:{port}{tls}, process {os.getpid()}")
        self.stdout.flush()

        def stop(signum: int, frame: Any) -> None:
            # serve_forever must be stopped from another thread; connections finish
            # the frame they are on, then close.
            server.stop()
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            server.server_close()
            if processes == 1:
                self.stdout.write("HL7 listener stopped")
            self.stdout.flush()
