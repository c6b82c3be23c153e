"""The gateway against seeded fuzz cases, judged by the independent oracle.

Every case is sent byte for byte over a real association to the listener
process.  The oracle, not the gateway, decides what is defective; the test then
holds the gateway to these rules (all violations are collected and the first
twenty reported with their case names, which ``mutate.make_case(seed, index)``
rebuilds, with ``flip=True`` for a name ending in "-flip"):

- the listener is still alive at the end and answers C-ECHO;
- nothing the oracle calls defective is answered Success (0x0000) or a warning
  (0xBxxx); nothing is answered "out of resources" (0xA7xx: there is no outage);
- every intact control is answered Success and stored;
- every failure answer left quarantine evidence: one row each, whose file ends
  with exactly the bytes sent (and no received file is left in staging);
- no C-STORE goes unanswered or ends its association;
- nothing is written outside the storage root: the listener's temporary folder
  (TMPDIR) and the project's VAR_DIR hold the same files before and after (the
  database files aside), and every stored or quarantined key is a file under the
  storage root.

``INGEST_FUZZ_CASES`` (default 1000) and ``INGEST_FUZZ_SEED`` choose the cases.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from ingest.models import QuarantinedObject
from studies.models import Instance
from tests import factories as f
from tests.ingest.fuzz import campaign, mutate
from tests.ingest.fuzz.sender import StoreSender
from tests.processes import Listener, start_listener, stop_listener

pytestmark = pytest.mark.worker

CALLING_AE = "FUZZ_SCU"
CASES = int(os.environ.get("INGEST_FUZZ_CASES", "1000"))
SEED = int(os.environ.get("INGEST_FUZZ_SEED", "20240611"))


@pytest.fixture
def fuzz_facility(transactional_db: Any) -> Any:
    return f.FacilityFactory(name="Fuzz Hospital", ae_titles=[CALLING_AE])  # type: ignore[no-untyped-call]


@pytest.fixture
def fuzz_listener(transactional_db: Any, tmp_path: Path) -> Iterator[Listener]:
    """The listener process with a temporary folder of its own, to be watched."""
    (tmp_path / "tmp").mkdir()
    listener = start_listener(tmp_path, TMPDIR=str(tmp_path / "tmp"))
    try:
        yield listener
    finally:
        stop_listener(listener)


def _files(root: Path, *, skip: tuple[str, ...] = ()) -> set[str]:
    """Files under ``root``, relative, leaving out those whose relative path starts
    with one of ``skip``."""
    found = (str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return {name for name in found if not name.startswith(skip)}


def test_the_gateway_refuses_what_the_oracle_calls_defective_and_keeps_it(
    fuzz_listener: Listener, fuzz_facility: Any, tmp_path: Path
) -> None:
    dicom_listener = fuzz_listener
    var_dir = Path(settings.VAR_DIR)
    # The database and the filesystem broker's messages (the gateway enqueues tasks)
    # are written there by design.
    database_files = ("test.sqlite3", "teleradiology.sqlite3", "celery-broker")
    var_before = _files(var_dir, skip=database_files)
    before = QuarantinedObject.objects.count()
    with StoreSender(
        host="127.0.0.1",
        port=dicom_listener.port,
        calling_ae=CALLING_AE,
        called_ae=dicom_listener.ae_title,
        abstract_syntaxes=mutate.ABSTRACT_SYNTAXES,
        transfer_syntaxes=mutate.TRANSFER_SYNTAXES,
    ) as sender:
        results = campaign.run(mutate.cases(SEED, CASES), sender)
        sender.close()  # the last word on a fresh association
        final_echo = sender.echo()

    found = campaign.violations(
        results,
        quarantined=[
            campaign.Quarantined(key, uid)
            for key, uid in QuarantinedObject.objects.values_list("storage_key", "sop_instance_uid")
        ],
        quarantined_before=before,
        stored_instances=set(Instance.objects.values_list("sop_instance_uid", flat=True)),
        storage_root=dicom_listener.storage_root,
        listener_alive=dicom_listener.process.poll() is None,
        final_echo=final_echo,
    )
    assert not found, f"seed {SEED}, {CASES} cases\n" + campaign.report(found, results)

    # Nothing written outside the storage root.
    assert not _files(tmp_path / "tmp"), "the listener wrote into its temporary folder"
    assert _files(var_dir, skip=database_files) == var_before
    root = dicom_listener.storage_root.resolve()
    keys = list(Instance.objects.values_list("storage_key", flat=True)) + list(
        QuarantinedObject.objects.exclude(storage_key="").values_list("storage_key", flat=True)
    )
    assert keys
    for key in keys:
        path = root.joinpath(*key.split("/")).resolve()
        assert path.is_relative_to(root) and path.is_file(), key
    assert _files(root) == {str(Path(*k.split("/"))) for k in keys}
