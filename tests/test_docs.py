"""The OpenAPI schema and the interactive docs are served."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_schema_lists_the_api():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/api/v1/studies/", "/api/v1/facilities/", "/api/v1/audit-events/export/"):
        assert path in paths


def test_docs_page_loads_with_local_assets():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger-ui" in response.content
    assert b"cdn.jsdelivr" not in response.content
