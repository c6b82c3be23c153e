"""Response headers: the Content-Security-Policy (no inline code on our pages), the
Permissions-Policy, and Cache-Control: no-store wherever patient data may be."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from tests.viewer.conftest import package, prepared  # noqa: F401 - a stand-in viewer

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent.parent
# A <script> with no src that a browser would run (a JSON data block is not run).
INLINE_SCRIPT = r"<script(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>"


def _policy(response: Any) -> dict[str, list[str]]:
    return {
        name: values
        for name, *values in (
            directive.split() for directive in response["Content-Security-Policy"].split(";")
        )
    }


def signed_in(persona: Any) -> Client:
    """A browser session of the persona (a user, or a radiologist's user)."""
    client = Client()
    client.force_login(getattr(persona, "user", persona))
    return client


@pytest.mark.parametrize(
    ("persona", "path"),
    [
        ("licensed_reader", "/worklist/"),
        ("licensed_reader", "/worklist/rows/"),
        ("licensed_reader", "/cases/"),
        ("group_admin", "/operations/"),
        ("group_admin", "/operations/panel/"),
        ("staff_a", "/portal/"),
    ],
)
def test_pages_of_signed_in_users_allow_no_inline_code_and_are_not_stored(
    persona: str, path: str, request: Any
) -> None:
    response = signed_in(request.getfixturevalue(persona)).get(path)
    assert response.status_code == 200
    policy = _policy(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"][0] == "'self'"
    assert policy["style-src"][0] == "'self'"
    for directive in ("script-src", "style-src"):
        assert "'unsafe-inline'" not in policy[directive]
        assert "'unsafe-eval'" not in policy[directive]
    assert policy["img-src"] == ["'self'", "data:", "blob:"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert response["Cache-Control"] == "no-store"
    # No inline script or style in what the page sent.
    html = response.content.decode()
    assert not re.search(INLINE_SCRIPT, html), html
    assert not re.search(r"<style|\sstyle=", html)


def test_the_permissions_policy_turns_off_unused_features_and_keeps_passkeys(
    licensed_reader: Any,
) -> None:
    for response in (Client().get("/login/"), signed_in(licensed_reader).get("/worklist/")):
        features = dict(
            item.strip().split("=", 1) for item in response["Permissions-Policy"].split(",")
        )
        for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
            assert features[feature] == "()"
        assert features["publickey-credentials-get"] == "(self)"
        assert features["publickey-credentials-create"] == "(self)"


def test_the_sign_in_page_is_under_the_policy_with_htmx_evaluating_nothing() -> None:
    response = Client().get("/login/")
    assert response.status_code == 200
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    html = response.content.decode()
    assert '"includeIndicatorStyles": false' in html
    assert '"allowEval": false' in html
    # Anonymous: no idle-logoff clock on the page.
    assert 'name="idle-logoff"' not in html


@pytest.mark.parametrize(
    "path",
    ["/api/v1/worklist/", "/api/v1/me/cases/", "/api/v1/studies/", "/api/v1/operations/"],
)
def test_api_answers_are_not_stored_whoever_asks(path: str, licensed_reader: Any) -> None:
    token_like = APIClient()
    token_like.force_authenticate(user=licensed_reader.user)  # no session: the path decides
    assert token_like.get(path)["Cache-Control"] == "no-store"
    assert APIClient().get(path)["Cache-Control"] == "no-store"


def test_dicomweb_answers_are_not_stored(licensed_reader: Any) -> None:
    response = signed_in(licensed_reader).get("/dicomweb/studies")
    assert response.status_code in (200, 204)
    assert response["Cache-Control"] == "no-store"
    assert Client().get("/dicomweb/studies")["Cache-Control"] == "no-store"


def test_the_viewer_keeps_its_own_policy_and_its_bundle_stays_cacheable(
    prepared: Path,  # noqa: F811
    licensed_reader: Any,
) -> None:
    client = signed_in(licensed_reader)
    page = client.get("/viewer/viewer?StudyInstanceUIDs=1.2.3")
    policy = _policy(page)
    # OHIF compiles its wasm codecs and runs blob: workers: its own policy, unchanged.
    assert "'wasm-unsafe-eval'" in policy["script-src"]
    assert policy["worker-src"] == ["'self'", "blob:"]
    assert page["Cache-Control"] == "no-store"
    # The public bundle, asked for by a signed-in user, keeps its long caching.
    bundle: Any = client.get("/viewer/app.bundle.css")
    assert bundle["Cache-Control"] == "public, max-age=86400"
    assert b"".join(bundle.streaming_content).startswith(b"@font-face")


def test_swagger_ui_runs_with_no_inline_script() -> None:
    page = Client().get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert not re.search(INLINE_SCRIPT, html)
    nonce = re.search(r'<style nonce="([^"]+)">', html)
    assert nonce
    assert f"'nonce-{nonce.group(1)}'" in _policy(page)["style-src"]
    script = re.search(r'<script src="([^"]+script[^"]*)"', html)
    assert script
    init = Client().get(script.group(1).replace("&amp;", "&"))
    assert init.status_code == 200
    assert "SwaggerUIBundle" in init.content.decode()


def _project_templates() -> list[Path]:
    skip = {".venv", "node_modules", "var", ".git"}
    return [
        path
        for path in ROOT.rglob("templates/**/*.html")
        if not skip.intersection(path.relative_to(ROOT).parts)
    ]


def test_no_template_of_the_project_has_inline_script_style_or_handlers() -> None:
    templates = _project_templates()
    assert len(templates) > 10
    offenders = []
    for path in templates:
        text = path.read_text()
        for pattern in (
            INLINE_SCRIPT,  # inline script
            r"<style(?![^>]*\bnonce=)",  # style block without the response's nonce
            r"\sstyle=",  # style attribute
            r"\son[a-z]+=",  # event handler attribute
            r"\shx-on",  # htmx's inline handlers are inline script too
        ):
            for match in re.finditer(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert offenders == []


def test_the_production_profile_keeps_the_policy() -> None:
    # The policy is not a development convenience: settings define it for every profile.
    policy: Any = settings.CONTENT_SECURITY_POLICY
    assert policy["DIRECTIVES"]["script-src"][0] == "'self'"
    assert "csp.middleware.CSPMiddleware" in settings.MIDDLEWARE


def test_the_browsable_api_allows_style_attributes_on_its_own_pages_only(
    licensed_reader: Any,
) -> None:
    client = signed_in(licensed_reader)
    html = client.get("/api/v1/worklist/", HTTP_ACCEPT="text/html")
    assert html["Content-Type"].startswith("text/html")
    policy = _policy(html)
    assert policy["style-src-attr"] == ["'unsafe-inline'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    as_json = client.get("/api/v1/worklist/", HTTP_ACCEPT="application/json")
    assert "style-src-attr" not in _policy(as_json)


def test_the_admin_change_list_style_carries_the_nonce(django_user_model: Any) -> None:
    admin = django_user_model.objects.create_superuser("root", "root@example.test", "pw")
    client = Client()
    client.force_login(admin)
    response = client.get("/admin/auth/group/")
    assert response.status_code == 200
    html = response.content.decode()
    assert not re.search(INLINE_SCRIPT, html)
    for nonce in re.findall(r'<style nonce="([^"]*)"', html):
        assert f"'nonce-{nonce}'" in _policy(response)["style-src"]
    assert not re.search(r"<style(?![^>]*\bnonce=)", html)
