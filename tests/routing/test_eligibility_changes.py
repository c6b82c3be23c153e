"""Eligibility changes take effect at once; validity is judged in the jurisdiction's
(or facility's) own time zone and may end at a time of day; the offer sweep judges
every open offer, held ones too, as the router judges scope."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from network.models import FacilityPrivilege, License, Shift
from network.validity import validity_window
from routing.eligibility import Reason
from routing.selectors import offers_no_longer_eligible, why_not
from routing.services import offers_withdraw_ineligible, study_route
from studies.models import Study
from studies.services import study_transition
from tests import factories as f
from tests.routing.conftest import NOW, make_reader
from worklist.models import Offer
from worklist.services.claims import study_claim

pytestmark = pytest.mark.django_db


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def open_offers(study: Any) -> set[str]:
    return set(
        Offer.objects.filter(study=study, withdrawn_at__isnull=True).values_list(
            "radiologist__user__username", flat=True
        )
    )


def ready_head_ct(facility: Any, *, at: dt.datetime = NOW) -> Study:
    study = f.StudyFactory(
        facility=facility,
        modality="CT",
        body_part="HEAD",
        priority=1,
        received_at=at - dt.timedelta(minutes=1),
    )
    return study_transition(study_id=study.pk, to_status="ready", at=at)


# -- validity as instants -------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "valid_to", "until", "ends_utc"),
    [
        # Sydney in summer (AEDT, UTC+11): the end of 6 December is 13:00 UTC that day,
        # not 11:00 Sydney time on the 7th as the UTC date had it.
        ("Australia/Sydney", dt.date(2026, 12, 6), None, utc(2026, 12, 6, 13)),
        # Sydney in winter (AEST, UTC+10).
        ("Australia/Sydney", dt.date(2026, 6, 6), None, utc(2026, 6, 6, 14)),
        # Chicago: CDT (UTC-5) in summer, CST (UTC-6) in winter.
        ("America/Chicago", dt.date(2026, 7, 1), None, utc(2026, 7, 2, 5)),
        ("America/Chicago", dt.date(2026, 12, 31), None, utc(2027, 1, 1, 6)),
        # The last day is the day the clocks go back (1 November 2026): 25 hours long,
        # it ends at midnight CST.
        ("America/Chicago", dt.date(2026, 11, 1), None, utc(2026, 11, 2, 6)),
        # The last day is the day the clocks go forward (8 March 2026): 23 hours.
        ("America/Chicago", dt.date(2026, 3, 8), None, utc(2026, 3, 9, 5)),
        # Ending at a time of day, in the zone's time of that day.
        ("America/Chicago", dt.date(2026, 3, 8), dt.time(17, 0), utc(2026, 3, 8, 22)),
        ("America/Chicago", dt.date(2026, 3, 7), dt.time(17, 0), utc(2026, 3, 7, 23)),
        ("Australia/Sydney", dt.date(2026, 12, 6), dt.time(9, 30), utc(2026, 12, 5, 22, 30)),
        ("UTC", dt.date(2026, 12, 6), None, utc(2026, 12, 7)),
    ],
)
def test_a_validity_ends_at_midnight_or_its_time_in_its_own_zone(zone, valid_to, until, ends_utc):
    starts_at, ends_at = validity_window(dt.date(2026, 1, 1), valid_to, until, zone)
    assert ends_at == ends_utc
    assert starts_at == dt.datetime(2026, 1, 1, tzinfo=ZoneInfo(zone))


@pytest.fixture
def sydney(group_a: Any, regions: Any) -> dict[str, Any]:
    """A facility in Sydney (AU-NSW), a neuro rule, two readers: one whose license
    ends on 6 December, one licensed for years."""
    from routing.models import RoutingRule

    nsw = f.JurisdictionFactory(code="AU-NSW", timezone="Australia/Sydney")
    facility = f.FacilityFactory(
        name="Sydney", reading_group=group_a, jurisdiction=nsw, timezone="Australia/Sydney"
    )
    rule = RoutingRule.objects.create(
        reading_group=group_a,
        name="Neuro",
        modalities=["CT"],
        body_parts=["HEAD"],
        wait_routine_seconds=600,
    )
    rule.subspecialties.set([f.subspecialty("neuro")])
    ending = make_reader(group_a, facility, name="dr_ending", region=regions["local"])
    License.objects.filter(radiologist=ending).update(valid_to=dt.date(2026, 12, 6))
    other = make_reader(group_a, facility, name="dr_other", region=regions["regional"])
    return {"facility": facility, "ending": ending, "other": other}


def shifts_around(*readers: Any, at: dt.datetime) -> None:
    for reader in readers:
        Shift.objects.filter(radiologist=reader).update(
            starts_at=at - dt.timedelta(hours=4), ends_at=at + dt.timedelta(hours=4)
        )


def test_an_australian_license_ends_at_midnight_sydney_time(sydney):
    last_minute, midnight = utc(2026, 12, 6, 12, 59), utc(2026, 12, 6, 13)
    shifts_around(sydney["ending"], sydney["other"], at=midnight)
    study = ready_head_ct(sydney["facility"], at=last_minute)
    assert why_not(study=study, radiologist_id=sydney["ending"].pk, now=last_minute).eligible
    verdict = why_not(study=study, radiologist_id=sydney["ending"].pk, now=midnight)
    assert verdict.reasons == (Reason.LICENSE_EXPIRED,)
    # An offer made in the last minute is withdrawn by the sweep from 00:00 Sydney.
    study_route(study_id=study.pk, now=last_minute)
    assert open_offers(study) == {"dr_ending"}
    assert offers_withdraw_ineligible(now=last_minute + dt.timedelta(seconds=30)) == 0
    assert offers_withdraw_ineligible(now=midnight) == 1
    assert open_offers(study) == {"dr_other"}


def test_a_license_may_end_at_a_time_of_day(sydney):
    License.objects.filter(radiologist=sydney["ending"]).update(
        valid_to=dt.date(2026, 12, 6), valid_until_time=dt.time(9, 30)
    )
    ends = utc(2026, 12, 5, 22, 30)  # 09:30 AEDT
    shifts_around(sydney["ending"], sydney["other"], at=ends)
    study = ready_head_ct(sydney["facility"], at=ends - dt.timedelta(minutes=5))
    before = why_not(
        study=study, radiologist_id=sydney["ending"].pk, now=ends - dt.timedelta(seconds=1)
    )
    assert before.eligible
    after = why_not(study=study, radiologist_id=sydney["ending"].pk, now=ends)
    assert after.reasons == (Reason.LICENSE_EXPIRED,)


def test_a_privilege_is_judged_in_the_facilitys_zone(sydney):
    FacilityPrivilege.objects.filter(radiologist=sydney["ending"]).update(
        valid_to=dt.date(2026, 6, 30)
    )
    License.objects.filter(radiologist=sydney["ending"]).update(valid_to=dt.date(2099, 1, 1))
    end = utc(2026, 6, 30, 14)  # midnight AEST
    shifts_around(sydney["ending"], at=end)
    study = ready_head_ct(sydney["facility"], at=end)
    minute = dt.timedelta(minutes=1)
    assert why_not(study=study, radiologist_id=sydney["ending"].pk, now=end - minute).eligible
    after = why_not(study=study, radiologist_id=sydney["ending"].pk, now=end)
    assert after.reasons == (Reason.PRIVILEGE_EXPIRED,)


def test_unroutable_coverage_counts_validity_in_the_zone(sydney):
    from routing.selectors import shift_coverage

    midnight = utc(2026, 12, 6, 13)
    shifts_around(sydney["ending"], sydney["other"], at=midnight)
    License.objects.filter(radiologist=sydney["other"]).delete()
    kwargs = {"facility": sydney["facility"], "jurisdiction_code": "AU-NSW"}
    before = shift_coverage(**kwargs, at=midnight - dt.timedelta(seconds=1))
    assert before == {"on_shift": 2, "licensed": 1, "privileged": 1}
    assert shift_coverage(**kwargs, at=midnight) == {"on_shift": 2, "licensed": 0, "privileged": 0}


# -- the sweep judges scope like the router, held offers too ---------------------


def test_the_sweep_withdraws_a_held_offer_whose_license_lost_the_scope(
    group_a, facility_a, regions, neuro_rule, ready_study
):
    # The cause of the open offers the issue saw: the sweep judged only the offers of
    # studies on offer.  While a colleague held the study, the narrowed reader's offer
    # was held, never judged, and came back onto their worklist on release; and the
    # study, left with that offer, counted as offered to someone.
    narrowed = make_reader(group_a, facility_a, name="dr_narrowed", region=regions["local"])
    holder = make_reader(group_a, facility_a, name="dr_holder", region=regions["local"])
    study_route(study_id=ready_study.pk, now=NOW)
    with time_machine.travel(NOW, tick=False):
        study_claim(study_id=ready_study.pk, radiologist=holder)
    License.objects.filter(radiologist=narrowed).update(scope=License.Scope.PRELIMINARY)
    assert offers_withdraw_ineligible(now=NOW + dt.timedelta(seconds=5)) == 1
    assert open_offers(ready_study) == {"dr_holder"}
    # The claimed study is left to its claim: not re-routed.
    assert Study.objects.get(pk=ready_study.pk).status == "claimed"


def test_a_final_read_after_a_preliminary_keeps_only_final_scope_offers(
    group_a, facility_a, regions, neuro_rule, ready_study
):
    neuro_rule.allow_preliminary = True
    neuro_rule.save()
    make_reader(group_a, facility_a, name="dr_a", region=regions["local"])
    b = make_reader(group_a, facility_a, name="dr_b", region=regions["local"])
    Study.objects.filter(pk=ready_study.pk).update(preliminary_at=NOW - dt.timedelta(minutes=5))
    study_route(study_id=ready_study.pk, now=NOW)
    License.objects.filter(radiologist=b).update(scope=License.Scope.PRELIMINARY)
    assert offers_withdraw_ineligible(now=NOW + dt.timedelta(seconds=5)) == 1
    assert open_offers(ready_study) == {"dr_a"}


def test_the_sweep_reads_a_constant_number_of_statements(group_a, facility_a, regions, neuro_rule):
    for n in range(3):
        make_reader(group_a, facility_a, name=f"dr_{n}", region=regions["local"])

    def statements(studies: int) -> int:
        for _ in range(studies):
            study_route(study_id=ready_head_ct(facility_a).pk, now=NOW)
        with CaptureQueriesContext(connection) as queries:
            assert offers_no_longer_eligible(now=NOW) == []
        return len(queries)

    assert statements(1) == statements(6)


# -- a change made through the admin API acts before the API answers -------------


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


@pytest.fixture
def replay(group_a, facility_a, regions, neuro_rule, group_admin, api) -> Any:
    """Two readers on shift at the local tier and one at the regional tier, around the
    real clock (the API stamps changes with it)."""
    now = dt.datetime.now(dt.UTC)
    readers = []
    for name, region in (
        ("dr_one", "local"),
        ("dr_two", "local"),
        ("dr_backup", "regional"),
    ):
        reader = make_reader(group_a, facility_a, name=name, region=regions[region])
        shifts_around(reader, at=now)
        readers.append(reader)
    return {"client": api(group_admin), "readers": readers, "facility": facility_a}


CHANGES = ["suspend", "preliminary", "privilege_deleted", "shift_ended"]


def change_through_api(client: Any, reader: Any, kind: str) -> Any:
    if kind == "suspend":
        lic = License.objects.get(radiologist=reader)
        return client.patch(f"/api/v1/licenses/{lic.pk}/", {"status": "suspended"}, format="json")
    if kind == "preliminary":
        lic = License.objects.get(radiologist=reader)
        return client.patch(f"/api/v1/licenses/{lic.pk}/", {"scope": "preliminary"}, format="json")
    if kind == "privilege_deleted":
        priv = FacilityPrivilege.objects.get(radiologist=reader)
        return client.delete(f"/api/v1/privileges/{priv.pk}/")
    shift = Shift.objects.get(radiologist=reader)
    ends = dt.datetime.now(dt.UTC).isoformat()
    return client.patch(f"/api/v1/shifts/{shift.pk}/", {"ends_at": ends}, format="json")


def restore(reader: Any, facility: Any) -> None:
    License.objects.filter(radiologist=reader).update(status="active", scope="final")
    if not FacilityPrivilege.objects.filter(radiologist=reader).exists():
        f.PrivilegeFactory(
            radiologist=reader,
            facility=facility,
            valid_from=dt.date(2025, 1, 1),
            valid_to=dt.date(2099, 12, 31),
        )
    shifts_around(reader, at=dt.datetime.now(dt.UTC))


@pytest.mark.parametrize("kind", CHANGES)
def test_a_credential_change_through_the_api_withdraws_and_reroutes_before_it_answers(replay, kind):
    one, two, backup = replay["readers"]
    study = ready_head_ct(replay["facility"], at=dt.datetime.now(dt.UTC))
    study_route(study_id=study.pk)
    assert open_offers(study) == {"dr_one", "dr_two"}
    response = change_through_api(replay["client"], one, kind)
    assert response.status_code in (200, 204), response.content
    # No sweep has run: the offer went with the change.
    assert open_offers(study) == {"dr_two"}
    withdrawn = Offer.objects.get(study=study, radiologist=one)
    assert withdrawn.withdrawn_reason.startswith("reader no longer eligible")
    # The last eligible local reader loses theirs too: the study, left with nobody, is
    # re-routed at once, to the regional reader.
    response = change_through_api(replay["client"], two, kind)
    assert response.status_code in (200, 204), response.content
    assert open_offers(study) == {"dr_backup"}
    assert Study.objects.get(pk=study.pk).status == "offered"
    assert backup.pk in set(
        Offer.objects.filter(study=study, withdrawn_at__isnull=True).values_list(
            "radiologist_id", flat=True
        )
    )


def test_change_to_withdrawn_latency_over_fifty_changes(replay, capsys):
    """Change-to-withdrawn latency, measured from the request to the response of 50
    admin changes (each offer is gone when the response is back): target p99 <= 1 s."""
    one = replay["readers"][0]
    samples = []
    for n in range(50):
        kind = CHANGES[n % len(CHANGES)]
        study = ready_head_ct(replay["facility"], at=dt.datetime.now(dt.UTC))
        study_route(study_id=study.pk)
        assert "dr_one" in open_offers(study)
        started = time.perf_counter()
        response = change_through_api(replay["client"], one, kind)
        samples.append(time.perf_counter() - started)
        assert response.status_code in (200, 204), response.content
        assert "dr_one" not in open_offers(study)
        restore(one, replay["facility"])
    with capsys.disabled():
        print(
            f"\nchange-to-withdrawn over {len(samples)} admin changes ({connection.vendor}): "
            f"p50 {statistics.median(samples) * 1000:.0f} ms, "
            f"p99 {p99(samples) * 1000:.0f} ms, max {max(samples) * 1000:.0f} ms"
        )
    assert p99(samples) <= 1.0


def test_the_expiry_alert_says_when_in_the_credentials_own_zone(group_a, facility_a):
    from alerts.models import Alert
    from routing.credentials import credentials_alert_expiring

    reader = f.RadiologistFactory(user=f.UserFactory(username="dr_expiring"), reading_group=group_a)
    texas = f.JurisdictionFactory(code="US-TX")
    texas.timezone = "America/Chicago"
    texas.save()
    f.LicenseFactory(
        radiologist=reader,
        jurisdiction=texas,
        number="TX-9",
        valid_from=dt.date(2025, 1, 1),
        valid_to=dt.date(2026, 6, 10),
        valid_until_time=dt.time(17, 0),
    )
    assert credentials_alert_expiring(today=dt.date(2026, 6, 1)) == 1
    message = Alert.objects.get(kind=Alert.Kind.CREDENTIAL_EXPIRY).message
    assert message.endswith("expires at 17:00 on 2026-06-10 (America/Chicago).")


def test_a_bulk_delete_of_licenses_in_the_admin_withdraws_at_once(replay, group_admin, client):
    from audit.models import AuditEvent

    one = replay["readers"][0]
    study = ready_head_ct(replay["facility"], at=dt.datetime.now(dt.UTC))
    study_route(study_id=study.pk)
    lic = License.objects.get(radiologist=one)
    client.force_login(group_admin)
    response = client.post(
        "/admin/network/license/",
        {"action": "delete_selected", "_selected_action": [lic.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not License.objects.filter(pk=lic.pk).exists()
    assert open_offers(study) == {"dr_two"}
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.DELETE, object_type="network.license", object_id=str(lic.pk)
    ).exists()
