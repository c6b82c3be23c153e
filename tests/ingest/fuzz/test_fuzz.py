"""The gateway against seeded fuzz cases, judged by the independent oracle.

Every case is sent byte for byte over a real association to the listener
process.  The oracle, not the gateway, decides what is defective; the test then
holds the gateway to these rules (all violations are collected and the first
twenty reported with their case names, which ``mutate.make_case(seed, index)``
rebuilds):

- the listener is still alive at the end and answers C-ECHO;
- nothing the oracle calls defective is answered Success (0x0000) or a warning
  (0xBxxx); nothing is answered "out of resources" (0xA7xx: there is no outage);
- every intact control is answered Success and stored;
- every failure answer left quarantine evidence: one row each, whose file ends
  with exactly the bytes sent (and no received file is left in staging);
- no C-STORE goes unanswered or ends its association.

``INGEST_FUZZ_CASES`` (default 1000) and ``INGEST_FUZZ_SEED`` choose the cases.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from ingest.models import QuarantinedObject
from studies.models import Instance
from tests import factories as f
from tests.ingest.fuzz import campaign, mutate
from tests.ingest.fuzz.sender import StoreSender
from tests.processes import Listener

pytestmark = pytest.mark.worker

CALLING_AE = "FUZZ_SCU"
CASES = int(os.environ.get("INGEST_FUZZ_CASES", "1000"))
SEED = int(os.environ.get("INGEST_FUZZ_SEED", "20240611"))


@pytest.fixture
def fuzz_facility(transactional_db: Any) -> Any:
    return f.FacilityFactory(name="Fuzz Hospital", ae_titles=[CALLING_AE])  # type: ignore[no-untyped-call]


def test_the_gateway_refuses_what_the_oracle_calls_defective_and_keeps_it(
    dicom_listener: Listener, fuzz_facility: Any
) -> None:
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
