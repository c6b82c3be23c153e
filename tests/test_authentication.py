"""API token authentication (django-rest-knox tokens): DRF's answers, with the
reader's profile read alongside."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import ApiToken
from network.models import Radiologist
from network.selectors import radiologist_for_user
from teleradiology.authentication import TokenAuthentication

pytestmark = pytest.mark.django_db


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_readers_profile_comes_with_the_token(licensed_reader):
    token, key = ApiToken.objects.create(user=licensed_reader.user)
    TokenAuthentication().authenticate_credentials(key.encode())  # first use: records it
    with CaptureQueriesContext(connection) as captured:
        user, found = TokenAuthentication().authenticate_credentials(key.encode())
        reader = radiologist_for_user(user=user)
    assert found == token and reader == licensed_reader
    assert len(captured.captured_queries) == 1


def test_a_user_without_a_profile_is_known_to_have_none(staff_a):
    _, key = ApiToken.objects.create(user=staff_a)
    with CaptureQueriesContext(connection) as captured:
        user, _ = TokenAuthentication().authenticate_credentials(key.encode())
        assert radiologist_for_user(user=user) is None
    # The token with its user and profile, then its first use recorded (once a minute).
    assert [q["sql"].split()[0] for q in captured.captured_queries] == ["SELECT", "UPDATE"]
    # Through the API: a radiologists-only endpoint refuses them as before.
    response = _client(key).post("/api/v1/worklist/next/")
    assert response.status_code == 403
    assert response.json()["detail"] == "Only radiologists claim studies."


def test_bad_and_inactive_tokens_are_refused_as_drf_does(licensed_reader):
    assert _client("not-a-token").get("/api/v1/worklist/").status_code == 401
    _, key = ApiToken.objects.create(user=licensed_reader.user)
    type(licensed_reader.user).objects.filter(pk=licensed_reader.user_id).update(is_active=False)
    response = _client(key).get("/api/v1/worklist/")
    assert response.status_code == 401
    assert response.json()["detail"] == "User inactive or deleted."


def test_without_the_token_join_the_profile_is_read(licensed_reader):
    user = type(licensed_reader.user).objects.get(pk=licensed_reader.user_id)  # not joined
    with CaptureQueriesContext(connection) as captured:
        assert radiologist_for_user(user=user) == licensed_reader
    assert len(captured.captured_queries) == 1
    assert Radiologist.objects.filter(user=user).exists()
