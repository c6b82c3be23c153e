"""API tokens: issued with the password, expiring, listed without their secret,
rotated, revoked by their owner or their group's admin (another group's: 404)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import ApiToken
from audit.models import AuditEvent
from tests.accounts.conftest import PASSWORD

pytestmark = pytest.mark.django_db
A = AuditEvent.Action
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def _issue(username: str) -> dict:
    response = APIClient().post(
        "/api/v1/auth/tokens/", {"username": username, "password": PASSWORD}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def _with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_token_works_until_it_expires(licensed_reader, group_a):
    with time_machine.travel(T0, tick=False) as clock:
        issued = _issue("dr_licensed")
        assert dt.datetime.fromisoformat(issued["expiry"]) == T0 + dt.timedelta(hours=12)
        client = _with(issued["token"])
        assert client.get("/api/v1/me/").status_code == 200
        clock.shift(dt.timedelta(hours=12, seconds=1))
        expired = client.get("/api/v1/me/")
    assert expired.status_code == 401 and expired.json()["detail"] == "Token expired."
    event = AuditEvent.objects.get(action=A.TOKEN_ISSUE)
    assert event.actor == licensed_reader.user and event.reading_group_id == group_a.pk
    assert event.object_id == str(issued["id"]) and event.detail["via"] == "password"


def test_the_owner_lists_without_secrets_and_revokes(licensed_reader):
    with time_machine.travel(T0, tick=False) as clock:
        first = _issue("dr_licensed")
        second = _issue("dr_licensed")
        client = _with(first["token"])
        clock.shift(dt.timedelta(minutes=5))
        listed = client.get("/api/v1/auth/tokens/").json()
        assert [t["id"] for t in listed] == [second["id"], first["id"]]
        assert set(listed[0]) == {"id", "prefix", "user", "created", "expiry", "last_used"}
        assert listed[1]["prefix"] == first["token"][:8]
        assert listed[1]["last_used"] is not None and listed[0]["last_used"] is None
        assert first["token"] not in str(listed) and second["token"] not in str(listed)
        assert client.delete(f"/api/v1/auth/tokens/{second['id']}/").status_code == 204
        assert _with(second["token"]).get("/api/v1/me/").status_code == 401
    event = AuditEvent.objects.get(action=A.TOKEN_REVOKE)
    assert event.detail == {"user": "dr_licensed", "reason": "revoked by owner"}


def test_sign_out_through_the_api_revokes_the_calling_token(licensed_reader):
    issued = _issue("dr_licensed")
    other = _issue("dr_licensed")
    client = _with(issued["token"])
    assert client.post("/api/v1/auth/logout/").status_code == 204
    assert client.get("/api/v1/me/").status_code == 401
    assert _with(other["token"]).get("/api/v1/me/").status_code == 200  # only that one
    assert AuditEvent.objects.get(action=A.TOKEN_REVOKE).detail["reason"] == "sign-out"


def test_page_sign_out_leaves_tokens_alone(licensed_reader):
    issued = _issue("dr_licensed")
    client = Client()
    client.post("/login/", {"username": "dr_licensed", "password": PASSWORD})
    client.post("/logout/")
    assert _with(issued["token"]).get("/api/v1/me/").status_code == 200


def test_rotation_issues_a_new_token_and_revokes_the_old(licensed_reader):
    issued = _issue("dr_licensed")
    rotated = _with(issued["token"]).post("/api/v1/auth/tokens/rotate/")
    assert rotated.status_code == 201
    assert _with(issued["token"]).get("/api/v1/me/").status_code == 401
    assert _with(rotated.json()["token"]).get("/api/v1/me/").status_code == 200
    assert AuditEvent.objects.get(action=A.TOKEN_REVOKE).detail["reason"] == "rotated"


def test_group_admins_list_and_revoke_their_peoples_tokens_only(
    api, licensed_reader, group_admin, other_admin, staff_a
):
    issued = _issue("dr_licensed")
    staff = _issue("staff_a")
    mine = api(group_admin).get("/api/v1/auth/tokens/?user=dr_licensed")
    assert mine.status_code == 200 and [t["id"] for t in mine.json()] == [issued["id"]]
    assert api(group_admin).get("/api/v1/auth/tokens/?user=staff_a").status_code == 200
    # Another group's admin learns nothing: 404 for the list and the token.
    assert api(other_admin).get("/api/v1/auth/tokens/?user=dr_licensed").status_code == 404
    assert api(other_admin).get("/api/v1/auth/tokens/?user=no-such-user").status_code == 404
    assert api(other_admin).delete(f"/api/v1/auth/tokens/{issued['id']}/").status_code == 404
    # A reader cannot reach another's token either.
    assert api(staff_a).delete(f"/api/v1/auth/tokens/{issued['id']}/").status_code == 404
    assert api(group_admin).delete(f"/api/v1/auth/tokens/{issued['id']}/").status_code == 204
    assert _with(issued["token"]).get("/api/v1/me/").status_code == 401
    assert _with(staff["token"]).get("/api/v1/me/").status_code == 200
    event = AuditEvent.objects.get(action=A.TOKEN_REVOKE)
    assert event.actor == group_admin and event.detail["reason"] == "revoked by admin"


def test_a_site_operator_manages_every_token_but_a_group_admin_no_operators(
    api, licensed_reader, group_admin
):
    from tests import factories as f

    operator = f.UserFactory(username="operator", is_superuser=True)
    issued = _issue("dr_licensed")
    ops = _issue("operator")
    assert api(operator).get("/api/v1/auth/tokens/?user=dr_licensed").status_code == 200
    assert api(group_admin).delete(f"/api/v1/auth/tokens/{ops['id']}/").status_code == 404
    assert api(operator).delete(f"/api/v1/auth/tokens/{issued['id']}/").status_code == 204


def test_issuing_drops_the_users_expired_tokens(licensed_reader):
    with time_machine.travel(T0, tick=False) as clock:
        _issue("dr_licensed")
        clock.shift(dt.timedelta(hours=13))
        _issue("dr_licensed")
    assert ApiToken.objects.filter(user=licensed_reader.user).count() == 1


def test_the_issue_answers_bad_input_with_400(db):
    client = APIClient()
    assert client.post("/api/v1/auth/tokens/", {}, format="json").status_code == 400
    assert client.get("/api/v1/auth/tokens/").status_code == 401


def test_the_operators_command_prints_a_working_token(licensed_reader):
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("api_token", "dr_licensed", stdout=out)
    key = out.getvalue().strip()
    assert _with(key).get("/api/v1/me/").status_code == 200
    event = AuditEvent.objects.get(action=A.TOKEN_ISSUE)
    assert event.actor is None and event.detail["via"] == "manage.py"
