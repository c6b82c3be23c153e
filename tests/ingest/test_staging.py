"""The staging sweep: what aborted transfers and stopped listener processes leave.
(The killed-listener case with a real process is in test_listener_security.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ingest import services
from ingest.selectors import staging_state
from ingest.storage import FileSystemStorage


def _old(path: Path, seconds: float = 3600) -> Path:
    path.write_bytes(b"partial")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)


def test_a_stopped_listeners_folder_is_removed_whatever_the_age_of_its_files(
    tmp_path: Path,
) -> None:
    storage = FileSystemStorage(tmp_path / "store")
    mine = services.staging_dir_of_this_process(storage)
    host = mine.name.split("-")[1]
    dead = storage.staging_dir() / f"listener-{host}-{_dead_pid()}-0123abcd"
    dead.mkdir()
    (dead / "tmp_fresh.dcm").write_bytes(b"half a data set")
    # An earlier process that had this very pid (a restarted container).
    earlier = storage.staging_dir() / f"listener-{host}-{os.getpid()}-feedf00d"
    earlier.mkdir()
    (earlier / "tmp_fresh.dcm").write_bytes(b"half a data set")
    # Another host's listener: its pid means nothing here, only age counts.
    elsewhere = storage.staging_dir() / "listener-otherhost-1-0123abcd"
    elsewhere.mkdir()
    (elsewhere / "tmp_fresh.dcm").write_bytes(b"in progress over there")
    _old(elsewhere / "tmp_stale.dcm")
    # This process: a transfer in progress is kept, an aborted one past the age goes.
    (mine / "tmp_in_progress.dcm").write_bytes(b"arriving")
    _old(mine / "tmp_aborted.dcm")
    _old(storage.staging_dir() / "stow-part.dcm")  # STOW-RS stages at the top

    assert staging_state(storage=storage)[0] == 7
    assert services.staging_sweep(storage=storage, max_age_seconds=300) == 5

    assert not dead.exists() and not earlier.exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["tmp_fresh.dcm"]
    assert sorted(p.name for p in mine.iterdir()) == ["tmp_in_progress.dcm"]
    assert staging_state(storage=storage)[0] == 2
