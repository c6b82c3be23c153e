"""Run the DICOM gateway:
``manage.py dicom_listener [--host 127.0.0.1] [--port 11112] [--ae-title TELERAD]``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

logger = logging.getLogger("ingest.listener")


def name_database_connections(application_name: str) -> None:
    """Give this process's PostgreSQL connections an application_name (shown in
    pg_stat_activity), whatever DATABASE_URL says; only this process's, since the
    settings dictionary is changed here, after the settings were read."""
    for alias in connections:
        params = connections.settings[alias]
        if params["ENGINE"].endswith("postgresql") and application_name:
            params.setdefault("OPTIONS", {})["application_name"] = application_name[:63]
    connections.close_all()  # any connection opened before now reconnects named


class Command(BaseCommand):
    help = "Accept C-ECHO and C-STORE from the facilities' AE titles and file the studies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            default=settings.DICOM_LISTEN_HOST,
            help="The interface to bind (default DICOM_LISTEN_HOST: 127.0.0.1 in development; "
            "required in production, where 0.0.0.0 names every interface).",
        )
        parser.add_argument("--port", type=int, default=settings.DICOM_PORT)
        parser.add_argument("--ae-title", default=settings.DICOM_AE_TITLE)
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="Listener processes sharing the port (SO_REUSEPORT); each runs its own "
            "interpreter, so several associations are filed in parallel.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from ingest.listener import make_server

        processes = max(1, options["processes"])
        host, port, ae_title = options["host"], options["port"], options["ae_title"]
        if not host:
            raise CommandError(
                "Refusing to start in production: name the interface the DICOM listener "
                "binds (DICOM_LISTEN_HOST or --host; 0.0.0.0 for every interface)."
            )
        name_database_connections(settings.DICOM_LISTENER_DB_APPLICATION_NAME)
        self.stdout.write(
            f"DICOM listener {ae_title} on {host}:{port} ({processes} process(es)); "
            f"storing under {settings.DICOM_STORAGE_ROOT}"
        )
        self.stdout.flush()
        if processes == 1:
            server = make_server(host=host, port=port, ae_title=ae_title)
            self._serve(server)
            return

        connections.close_all()  # never share a database connection across fork
        children: dict[int, int] = {}

        def spawn(slot: int) -> None:
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    server = make_server(host=host, port=port, ae_title=ae_title, reuse_port=True)
                    self._serve(server)
                except (KeyboardInterrupt, SystemExit):
                    pass  # asked to stop
                except BaseException:
                    code = 1
                    logger.exception("listener process %d failed", os.getpid())
                finally:
                    os._exit(code)
            children[pid] = slot

        def stop(signum: int, frame: Any) -> None:
            for pid in list(children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            sys.exit(0)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        for slot in range(processes):
            spawn(slot)
        # Supervise: a listener process that dies is replaced.
        while True:
            pid, _ = os.wait()
            if pid in children:
                slot = children.pop(pid)
                self.stderr.write(f"listener process {pid} exited; restarting")
                time.sleep(1)
                spawn(slot)

    def _serve(self, server: Any) -> None:
        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
