"""No 500 from input (issue 16): ids past 64 bits, impossible dates, deep JSON,
regular expressions in rules and oversized text are each a clear 4xx."""

from __future__ import annotations

import time

import pytest

from routing.models import RoutingRule
from routing.rules import RuleKey, StudyKey, rule_matches
from teleradiology.parsers import MAX_JSON_DEPTH, json_loads_bounded, json_too_deep

pytestmark = pytest.mark.django_db

HUGE = 2**63  # one past the largest bigint
DEEP = "[" * 5000 + "]" * 5000


# --- Ids beyond the column's range ----------------------------------------------
def test_a_huge_study_id_on_the_report_route_is_404(api, licensed_reader):
    # The URL: answered 500 before.
    response = api(licensed_reader.user).get(f"/api/v1/studies/{HUGE}/report/")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        f"/api/v1/studies/{HUGE}/",  # router detail route
        f"/api/v1/radiologists/{HUGE}/",
        f"/api/v1/reports/{HUGE}/",
        f"/api/v1/studies/{HUGE}/routing/",  # plain path() routes
        f"/api/v1/reports/{HUGE}/pdf",
        f"/api/v1/peer-review-policies/{HUGE}/",
        f"/api/v1/studies/{'9' * 40}/timeline/",
        f"/studies/{HUGE}/",  # pages
        f"/studies/{HUGE}/report/",
    ],
)
def test_huge_path_ids_are_404_on_router_and_plain_routes(client, group_admin, url):
    client.force_login(group_admin)
    assert client.get(url).status_code == 404


def test_the_largest_bigint_still_reaches_the_view(api, group_admin):
    # 2**63 - 1 is a valid id: the view answers (404, no such row), not the resolver.
    response = api(group_admin).get(f"/api/v1/radiologists/{HUGE - 1}/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No Radiologist matches the given query."}


# --- Filter values beyond range ---------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/privileges/?radiologist=99999999999999999999999",
        "/api/v1/licenses/?radiologist=99999999999999999999999",
        "/api/v1/reports/?study=99999999999999999999999",
        "/api/v1/routing-rules/?reading_group=99999999999999999999999",
        "/api/v1/report-templates/?reading_group=99999999999999999999999",
        "/api/v1/worklist/?facility=99999999999999999999999",
        "/api/v1/worklist/?tier=99999999999999999999999",
    ],
)
def test_filter_values_beyond_range_are_400_naming_the_field(
    api, group_admin, licensed_reader, url
):
    user = licensed_reader.user if "worklist" in url else group_admin
    response = api(user).get(url)
    assert response.status_code == 400, response.content
    field = url.split("?")[1].split("=")[0]
    assert field in response.json()


def test_the_routing_explanations_radiologist_beyond_range_is_400(api, group_admin, facility_a):
    from tests import factories as f

    study = f.StudyFactory(facility=facility_a)
    response = api(group_admin).get(
        f"/api/v1/studies/{study.pk}/routing/?radiologist=99999999999999999999999"
    )
    assert response.status_code == 400
    assert "radiologist" in response.json()
    unicode_digit = api(group_admin).get(f"/api/v1/studies/{study.pk}/routing/?radiologist=²")
    assert unicode_digit.status_code == 400


# --- Impossible dates -------------------------------------------------------------
def test_an_impossible_date_is_400_naming_the_field(api, group_admin):
    # The URL: answered 500 before.
    response = api(group_admin).get("/api/v1/peer-reviews/summary/?from=2026-13-45")
    assert response.status_code == 400
    assert response.json() == {"from": ["A date as YYYY-MM-DD."]}
    assert api(group_admin).get("/api/v1/peer-reviews/summary/?to=2026-02-30").status_code == 400
    assert api(group_admin).get("/api/v1/peer-reviews/summary/?from=2026-02-28").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/audit-events/?at_after=2026-13-45",
        "/api/v1/studies/?received_after=2026-13-45T10:00:00Z",
        "/api/v1/licenses/?valid_on=2026-02-30",
        "/api/v1/shifts/?on_duty_at=2026-13-45T10:00:00Z",
    ],
)
def test_impossible_dates_in_filters_are_400(api, django_user_model, url):
    root = django_user_model.objects.create_superuser("root_dates", "r@example.test", "pw")
    response = api(root).get(url)
    assert response.status_code == 400, response.content
    assert url.split("?")[1].split("=")[0] in response.json()


@pytest.mark.parametrize(
    ("value", "status"),
    [
        # Valid ISO 8601, beyond PostgreSQL's offsets (schemathesis found the 500).
        ("2830-11-16T03:47:49.564885-21:02", 200),
        ("2026-12-06T10:00:00+15:59", 200),
        # In UTC it would fall before the year 1.
        ("0001-01-01T00:30:00+05:00", 400),
    ],
)
def test_date_time_filters_take_any_offset_as_utc(api, django_user_model, value, status):
    root = django_user_model.objects.create_superuser("root_offsets", "o@example.test", "pw")
    for url in ("/api/v1/quarantine/", "/api/v1/studies/", "/api/v1/audit-events/"):
        name = "at_before" if "audit" in url else "received_before"
        response = api(root).get(url, {name: value})
        assert response.status_code == status, (url, response.content)
        if status == 400:
            assert name in response.json()


# --- JSON nesting depth -------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/routing-rules/",
        "/api/v1/me/macros/",
        "/api/v1/report-templates/",
        "/api/v1/facilities/",
        "/api/v1/shifts/",
    ],
)
def test_deeply_nested_json_is_400_on_write_endpoints(client, group_admin, licensed_reader, url):
    client.force_login(licensed_reader.user if "macros" in url else group_admin)
    response = client.post(url, data=DEEP, content_type="application/json")
    assert response.status_code == 400
    assert "nested deeper" in response.json()["detail"]


def test_json_past_the_depth_limit_is_400_even_far_below_the_recursion_limit(api, licensed_reader):
    body = '{"name": "n", "text": "t", "extra": ' + "[" * 100 + "]" * 100 + "}"
    response = api(licensed_reader.user).post(
        "/api/v1/me/macros/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in response.json()["detail"]


def test_the_depth_scan_ignores_brackets_inside_strings_and_allows_the_limit():
    assert not json_too_deep('{"a": "' + "[" * 500 + '"}')
    assert not json_too_deep("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    assert json_too_deep("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert json_too_deep('{"a": "\\"", "b": ' + "{" * 100 + "}" * 100 + "}")
    assert json_loads_bounded('{"a": [1, {"b": "]]]"}]}') == {"a": [1, {"b": "]]]"}]}
    with pytest.raises(ValueError, match="nested deeper"):
        json_loads_bounded(DEEP)


# --- Regular expressions in routing rules -----------------------------------------
def rule_body(group, **overrides):
    return {
        "reading_group": group.pk,
        "name": "Knees",
        "position": 5,
        "subspecialties": ["neuro"],
        **overrides,
    }


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=KNEE)", "(?<!LEFT )KNEE", "x" * 301, "KNEE(("])
def test_rule_patterns_the_safe_engine_refuses_are_400(
    api, group_admin, group_a, licensed_reader, pattern
):
    response = api(group_admin).post(
        "/api/v1/routing-rules/", rule_body(group_a, description_pattern=pattern), format="json"
    )
    assert response.status_code == 400, response.content
    assert "description_pattern" in response.json()
    assert not RoutingRule.objects.filter(name="Knees").exists()


def test_a_catastrophic_pattern_is_matched_in_linear_time(
    api, group_admin, group_a, licensed_reader
):
    response = api(group_admin).post(
        "/api/v1/routing-rules/",
        rule_body(group_a, description_pattern="(a+)+$", procedure_code_pattern=r"^7\d+"),
        format="json",
    )
    assert response.status_code == 201, response.content
    rule = RuleKey(
        rule_id=1,
        is_default=False,
        facility_ids=frozenset(),
        modalities=frozenset(),
        body_parts=frozenset(),
        description_pattern="(a+)+$",
        procedure_code_pattern="",
        priorities=frozenset(),
        flags=frozenset(),
    )
    study = StudyKey(
        facility_id=1,
        modality="CT",
        body_part="HEAD",
        description="a" * 50_000 + "!",  # backtracking regex engines take ages here
        procedure_code="",
        priority=3,
        flags=frozenset(),
    )
    started = time.monotonic()
    assert not rule_matches(rule, study)
    assert time.monotonic() - started < 1.0
    assert rule_matches(rule, study.__class__(**{**study.__dict__, "description": "xaaa"}))


# --- Sizes of free text ---------------------------------------------------------------
def test_an_oversize_macro_is_400_and_a_large_one_is_fine(api, licensed_reader):
    client = api(licensed_reader.user)
    huge = client.post(
        "/api/v1/me/macros/", {"name": "big", "text": "x" * 1_000_000}, format="json"
    )
    assert huge.status_code == 400
    assert "20000" in str(huge.json()["text"])
    fine = client.post("/api/v1/me/macros/", {"name": "ok", "text": "x" * 20_000}, format="json")
    assert fine.status_code == 201, fine.content


def test_an_oversize_template_schema_is_400(api, group_admin, group_a):
    schema = {"sections": [{"key": "s", "title": "x" * 300_000, "fields": []}]}
    response = api(group_admin).post(
        "/api/v1/report-templates/",
        {"code": "big", "name": "Big", "reading_group": group_a.pk, "schema": schema},
        format="json",
    )
    assert response.status_code == 400
    assert "too large" in str(response.json()["schema"])


@pytest.mark.parametrize(
    "cursor_json",
    [
        "[" * 3000 + "]" * 3000,  # deeper than Python's recursion limit
        f'[1, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00", {HUGE}]',
        '[1, "2026-13-45T00:00:00", "2026-01-01T00:00:00", 1]',
    ],
)
def test_a_forged_worklist_cursor_is_400(api, licensed_reader, cursor_json):
    import base64

    cursor = base64.urlsafe_b64encode(cursor_json.encode()).decode().rstrip("=")
    response = api(licensed_reader.user).get(f"/api/v1/worklist/?cursor={cursor}")
    assert response.status_code == 400
    assert "cursor" in response.json()


def test_a_rule_wait_past_a_week_is_400_not_a_database_error(
    api, group_admin, group_a, licensed_reader
):
    response = api(group_admin).post(
        "/api/v1/routing-rules/", rule_body(group_a, wait_stat_seconds=2**40), format="json"
    )
    assert response.status_code == 400
    assert "wait_stat_seconds" in response.json()


def test_the_turnaround_facility_beyond_range_is_400(api, group_admin):
    response = api(group_admin).get(f"/api/v1/turnaround/?facility={HUGE}")
    assert response.status_code == 400
    assert "facility" in response.json()
