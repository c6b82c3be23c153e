"""Background work is handed over by task name, after commit.

Services never import ``tasks.py`` (which imports the services): they call
``enqueue("app.task_name", ...)``.  Inside a transaction the message is sent
once it commits; in autocommit it is sent at once.  A broker that cannot be
reached is logged, not raised: the caller's own work is done and must still be
answered (a DICOM sender told "failed" after its object was stored would send
it again for nothing).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from teleradiology.celery import app

logger = logging.getLogger(__name__)


def _send(name: str, args: tuple[Any, ...]) -> None:
    try:
        if app.conf.task_always_eager:  # tests and tools that run tasks inline
            if name not in app.tasks:
                app.loader.import_default_modules()  # the apps' tasks.py, as a worker does
            app.tasks[name].apply(args=args)
        else:
            app.send_task(name, args=args)
    except Exception:  # the broker is outside us; see the module's note
        logger.exception("could not enqueue %s%r", name, args)


def enqueue(name: str, *args: Any) -> None:
    """Send task ``name`` with ``args`` once the current transaction commits."""
    transaction.on_commit(lambda: _send(name, args))
