"""The message store's services, API and admin (in process, on the test database)."""

from __future__ import annotations

import hl7
import pytest
from django.test import Client

from audit.models import AuditEvent
from orders import hl7 as orders_hl7
from orders.mllp import answer_of
from orders.models import Hl7Message
from orders.services.messages import message_receive, message_replay
from studies.models import Order
from teleradiology.errors import Conflict, DomainError
from tests import factories as f
from tests.orders.samples import orm

pytestmark = pytest.mark.django_db


@pytest.fixture
def sender(facility_a):
    facility_a.hl7_sending_facility = "STMARY"
    facility_a.save(update_fields=["hl7_sending_facility"])
    return facility_a


def receive(text: str, peer: str = "127.0.0.1"):
    return message_receive(data=text.encode(), peer_address=peer)


def parsed(ack: str) -> hl7.Message:
    return hl7.parse(ack)


def test_an_ae_message_replayed_after_its_cause_is_fixed_is_applied(sender, group_admin):
    cancel = receive(orm(control="CA1", accession="ACC9", order_control="CA"))
    assert cancel.outcome == "AE"
    ack = parsed(cancel.ack)
    assert str(ack.segment("MSA")[1]) == "AE" and str(ack.segment("ERR")[2]).startswith("OBR")
    stored = Hl7Message.objects.get(pk=cancel.message_id)
    assert stored.error_field and "ACC9" in stored.error_text
    # The cause is fixed: the order arrives (under its own control id).
    assert receive(orm(control="NW1", accession="ACC9")).outcome == "AA"

    replayed = message_replay(message_id=stored.pk, actor=group_admin)
    assert replayed.outcome == "AA" and replayed.replay_of_id == stored.pk
    assert str(parsed(replayed.ack).segment("MSA")[1]) == "AA"
    assert Order.objects.get(accession_number="ACC9").status == "cancelled"
    stored.refresh_from_db()
    assert (stored.outcome, stored.replay_count, stored.replayed_by) == ("AE", 1, "admin_a")
    assert stored.replayed_at is not None
    events = AuditEvent.objects.filter(object_type="orders.hl7message")
    assert events.filter(action="update", object_id=str(stored.pk), actor=group_admin).exists()
    assert events.filter(action="create", object_id=str(replayed.pk), patient_id="PID100").exists()

    # Applied now: a second replay is refused.
    with pytest.raises(Conflict):
        message_replay(message_id=replayed.pk, actor=group_admin)


def test_a_control_id_refused_before_may_be_sent_again_and_applied(sender):
    first = receive(orm(control="R1", accession="ACCR", order_control="XO"))
    assert first.outcome == "AE"
    assert receive(orm(control="R1", accession="ACCR")).outcome == "AA"
    third = receive(orm(control="R1", accession="ACCR"))
    assert third.outcome == "AA"
    assert Hl7Message.objects.get(pk=third.message_id).duplicate_of_id is not None
    assert Order.objects.filter(accession_number="ACCR").count() == 1


def test_a_message_kept_in_part_is_not_replayed(sender, group_admin):
    receipt = message_receive(
        data=orm(control="BIG", accession="ACCB").encode()[:2000],
        peer_address="127.0.0.1",
        size_bytes=5_000_000,
        truncated=True,
        frame_problem=orders_hl7.Problem("AR", "too large"),
    )
    assert receipt.outcome == "AR"
    with pytest.raises(DomainError):
        message_replay(message_id=receipt.message_id, actor=group_admin)


def test_when_the_message_cannot_be_stored_the_sender_is_told_ar():
    def broken(**kwargs):
        raise RuntimeError("database down")

    reply = answer_of(
        orm(control="DOWN1", accession="ACCZ").encode(),
        peer="127.0.0.1",
        size=10,
        truncated=False,
        problem=None,
        receive=broken,
    )
    ack = hl7.parse(reply.strip(b"\x0b\x1c\r").decode())
    assert str(ack.segment("MSA")[1]) == "AR" and str(ack.segment("MSA")[2]) == "DOWN1"
    assert str(ack.segment("ERR")[3]).startswith("207")


def test_acks_of_v2_3_and_v2_4_use_err_1_and_parse():
    header, problem = orders_hl7.read_header(orm(control="Q1", accession="A", version="2.3"))
    assert problem is None
    text = orders_hl7.build_ack(header, code="AE", text="unknown | accession^", field="OBR-18")
    ack = hl7.parse(text)
    assert str(ack.segment("MSH")[12]) == "2.3"
    assert str(ack.segment("ERR")[1]).startswith("OBR^1^18^204")
    garbage = orders_hl7.read(b"\xff\xfe garbage")
    ack = hl7.parse(orders_hl7.build_ack(garbage.header, code="AR", text="x"))
    assert str(ack.segment("MSA")[1]) == "AR"


# --- API --------------------------------------------------------------------------


@pytest.fixture
def messages(sender, facility_c):
    facility_c.hl7_sending_facility = "OTHERC"
    facility_c.save(update_fields=["hl7_sending_facility"])
    return {
        "a_ok": receive(orm(control="API1", accession="ACCAPI")).message_id,
        "a_ae": receive(orm(control="API2", accession="ACCAPI2", order_control="CA")).message_id,
        "c_ok": receive(orm(control="API3", accession="ACCAPI", facility="OTHERC")).message_id,
        "unknown": receive(orm(control="API4", accession="ACCAPI", facility="NOBODY")).message_id,
    }


def test_group_admins_see_their_facilities_messages_audited(
    api, messages, group_admin, other_admin, staff_a
):
    response = api(group_admin).get("/api/v1/hl7-messages/")
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {messages["a_ok"], messages["a_ae"]}
    assert "raw" not in response.json()["results"][0]
    listed = AuditEvent.objects.filter(action="list", object_type="orders.hl7message")
    assert set(listed.values_list("object_id", flat=True)) == {str(i) for i in ids}
    assert set(listed.values_list("patient_id", flat=True)) == {"PID100"}

    filtered = api(group_admin).get("/api/v1/hl7-messages/", {"outcome": "AE"}).json()
    assert [row["id"] for row in filtered["results"]] == [messages["a_ae"]]
    by_facility = api(group_admin).get(
        "/api/v1/hl7-messages/",
        {"facility": Hl7Message.objects.get(pk=messages["a_ok"]).facility_id},
    )
    assert len(by_facility.json()["results"]) == 2

    detail = api(group_admin).get(f"/api/v1/hl7-messages/{messages['a_ae']}/")
    assert detail.status_code == 200
    body = detail.json()
    assert body["raw"].startswith("MSH|") and body["ack"].startswith("MSH|")
    assert body["outcome"] == "AE" and body["error_field"]
    assert AuditEvent.objects.filter(
        action="read", object_id=str(messages["a_ae"]), patient_id="PID100"
    ).exists()

    # Another group's admin and facility staff see none of it; unknown senders' are
    # for site operators only.
    assert api(other_admin).get(f"/api/v1/hl7-messages/{messages['a_ae']}/").status_code == 404
    assert {r["id"] for r in api(other_admin).get("/api/v1/hl7-messages/").json()["results"]} == {
        messages["c_ok"]
    }
    assert api(staff_a).get("/api/v1/hl7-messages/").status_code == 403
    assert api(None).get("/api/v1/hl7-messages/").status_code in (401, 403)
    operator = f.UserFactory(username="operator", is_superuser=True, is_staff=True)
    seen = {r["id"] for r in api(operator).get("/api/v1/hl7-messages/").json()["results"]}
    assert seen == set(messages.values())
    unknown = api(operator).get("/api/v1/hl7-messages/", {"unknown_facility": "true"}).json()
    assert [r["id"] for r in unknown["results"]] == [messages["unknown"]]


def test_replay_through_the_api(api, messages, group_admin, other_admin):
    assert (
        api(other_admin).post(f"/api/v1/hl7-messages/{messages['a_ae']}/replay/").status_code == 404
    )
    response = api(group_admin).post(f"/api/v1/hl7-messages/{messages['a_ae']}/replay/")
    # ACCAPI2 was never ordered: replayed, the cancel is still refused (AE).
    assert response.status_code == 201
    assert response.json()["outcome"] == "AE" and response.json()["replay_of"] == messages["a_ae"]
    receive(orm(control="API5", accession="ACCAPI2"))
    again = api(group_admin).post(f"/api/v1/hl7-messages/{messages['a_ae']}/replay/")
    assert again.status_code == 201 and again.json()["outcome"] == "AA"
    assert (
        api(group_admin).post(f"/api/v1/hl7-messages/{messages['a_ok']}/replay/").status_code == 409
    )


def test_the_admin_lists_filters_and_replays(messages, group_admin):
    group_admin.is_staff = True
    group_admin.save(update_fields=["is_staff"])
    from django.contrib.auth.models import Permission

    group_admin.user_permissions.add(Permission.objects.get(codename="view_hl7message"))
    client = Client()
    client.force_login(group_admin)
    page = client.get("/admin/orders/hl7message/", {"outcome__exact": "AE"})
    assert page.status_code == 200
    assert "API2" in page.content.decode() and "API1" not in page.content.decode()
    assert "OTHERC" not in page.content.decode()
    receive(orm(control="API6", accession="ACCAPI2"))
    done = client.post(
        "/admin/orders/hl7message/",
        {"action": "replay", "_selected_action": [messages["a_ae"]]},
        follow=True,
    )
    assert done.status_code == 200 and "Replayed: 1 AA" in done.content.decode()
    assert Hl7Message.objects.filter(replay_of_id=messages["a_ae"], outcome="AA").exists()


def test_the_list_reads_a_fixed_number_of_statements(api, sender, group_admin):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        client = api(group_admin)
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/api/v1/hl7-messages/").status_code == 200
        return len(queries.captured_queries)

    receive(orm(control="QC1", accession="ACCQ1"))
    count()  # the first request fills per-process caches (content types)
    few = count()
    for n in range(2, 8):
        receive(orm(control=f"QC{n}", accession=f"ACCQ{n}"))
    assert count() == few
