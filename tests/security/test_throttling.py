"""API throttles: past its rate a caller is answered 429 with Retry-After and a clear
message, per address (anonymous), per user, and stricter for sign-in and claims."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

LOW_RATES = {
    "anon": "3/min",
    "user": "5/min",
    "dicomweb": "4/min",
    "sign-in": "2/min",
    "claim": "2/min",
    "connection-test": "2/min",
}


@pytest.fixture
def low_rates(settings: Any) -> dict[str, str]:
    """Low rates, counted in a cache of this test's own (no counts from other tests)."""
    rest = dict(settings.REST_FRAMEWORK)
    rest["DEFAULT_THROTTLE_RATES"] = dict(LOW_RATES)
    settings.REST_FRAMEWORK = rest
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"throttle-test-{id(rest)}",
        }
    }
    return dict(LOW_RATES)


def as_user(persona: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=getattr(persona, "user", persona))
    return client


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 0 < wait <= 60
    if response["Content-Type"] == "application/json":
        assert "throttled" in response.json()["detail"].lower()
    assert response["Cache-Control"] == "no-store"


def test_anonymous_callers_are_limited_per_address(low_rates: Any) -> None:
    client = APIClient()
    for _ in range(3):
        assert client.get("/api/docs/").status_code == 200
    assert_throttled(client.get("/api/docs/"))
    # Another address has its own count.
    assert client.get("/api/docs/", REMOTE_ADDR="10.9.8.7").status_code == 200


def test_each_user_is_limited_on_their_own(
    low_rates: Any, licensed_reader: Any, unlicensed_reader: Any
) -> None:
    reader = as_user(licensed_reader)
    for _ in range(5):
        assert reader.get("/api/v1/worklist/").status_code == 200
    assert_throttled(reader.get("/api/v1/worklist/"))
    assert as_user(unlicensed_reader).get("/api/v1/me/").status_code == 200


def test_claim_storms_meet_the_stricter_claim_rate(
    low_rates: Any, licensed_reader: Any, settings: Any
) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**low_rates, "user": "100/min"},
    }
    reader = as_user(licensed_reader)
    # No such study: answered (404) until the claim rate is used up.
    for _ in range(2):
        assert reader.post("/api/v1/studies/999999/claim/").status_code == 404
    assert_throttled(reader.post("/api/v1/studies/999999/claim/"))
    assert_throttled(reader.post("/api/v1/studies/999999/release/", {"reason": "x"}))
    assert_throttled(reader.post("/api/v1/worklist/next/"))
    # Reading the worklist is not a claim: still answered.
    assert reader.get("/api/v1/worklist/").status_code == 200


def test_sign_in_attempts_meet_the_sign_in_rate(low_rates: Any) -> None:
    client = APIClient()
    for _ in range(2):
        response = client.post(
            "/api/v1/auth/tokens/", {"username": "nobody", "password": "wrong"}, format="json"
        )
        assert response.status_code == 400
    assert_throttled(
        client.post(
            "/api/v1/auth/tokens/", {"username": "nobody", "password": "wrong"}, format="json"
        )
    )


def test_dicomweb_retrievals_count_under_their_own_rate(
    low_rates: Any, licensed_reader: Any
) -> None:
    reader = as_user(licensed_reader)
    for _ in range(4):
        assert reader.get("/dicomweb/studies").status_code in (200, 204)
    assert_throttled(reader.get("/dicomweb/studies"))
    # The API's own count is apart from it.
    assert reader.get("/api/v1/worklist/").status_code == 200


def test_the_schema_documents_429_on_every_operation() -> None:
    schema = APIClient().get("/api/schema/?format=json").json()
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]
    assert len(operations) > 50
    missing = [
        f"{method} {path}" for path, method, op in operations if "429" not in op["responses"]
    ]
    assert missing == []
    throttled = schema["components"]["responses"]["Throttled"]
    assert "Retry-After" in throttled["headers"]


def test_default_rates_leave_room_for_readers_and_stop_storms() -> None:
    from teleradiology import settings as configured

    rates = configured.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert set(rates) == set(LOW_RATES)
    assert rates["claim"] == "60/min"
    assert rates["connection-test"] == "20/min"  # a facility's peer tests (tests/onboarding)
    assert rates["sign-in"] == "10/min"
