"""Background work is handed over by task name, after commit.

Services never import ``tasks.py`` (which imports the services): they call
``enqueue("app.task_name", ...)``.  Inside a transaction the message is sent
once it commits; in autocommit it is sent at once.  A broker that cannot be
reached is logged, not raised: the caller's own work is done and must still be
answered (a DICOM sender told "failed" after its object was stored would send
it again for nothing), and every task handed over this way has a durable timer
or sweep behind it, or is an alert.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from django.db import transaction

from teleradiology.celery import app

logger = logging.getLogger(__name__)


# The apps' task modules are imported once, by one thread at a time (a live test
# server's threads may enqueue at the same moment).
_import_lock = threading.Lock()


def _send(name: str, args: tuple[Any, ...], queue: str | None) -> None:
    if app.conf.task_always_eager:
        # Tests and tools that run tasks inline: run it here, as .delay() would,
        # letting its errors show.
        if name not in app.tasks:
            with _import_lock:
                if name not in app.tasks:
                    app.loader.import_default_modules()  # the apps' tasks.py, as a worker does
        app.tasks[name].apply(args=args, throw=True)
        return
    try:
        if queue:
            app.send_task(name, args=args, queue=queue)
        else:
            app.send_task(name, args=args)
    except Exception:  # the broker is outside us; see the module's note
        logger.exception("could not enqueue %s%r", name, args)


def enqueue(name: str, *args: Any, queue: str | None = None, after_commit: bool = True) -> None:
    """Send task ``name`` with ``args`` once the current transaction commits (to
    ``queue`` if given, else the task's default queue).  A sweep that writes nothing
    the task must see (it only found work due) sends at once: ``after_commit=False``."""
    if after_commit:
        transaction.on_commit(lambda: _send(name, args, queue))
    else:
        _send(name, args, queue)


def enqueue_in_batches(
    name: str, ids: Sequence[int], *, size: int, queue: str | None = None
) -> int:
    """Once the current transaction commits, send task ``name`` with ``ids`` in
    order, ``size`` of them per message (e.g. studies to route, most urgent first,
    so that a worker handles each batch in one transaction).  Returns the number
    of messages."""
    size = max(1, size)
    chunks = [list(ids[i : i + size]) for i in range(0, len(ids), size)]
    for chunk in chunks:
        enqueue(name, chunk, queue=queue)
    return len(chunks)
