"""A believable demo network: two reading groups, facilities in four US states and
three other countries, thirty readers around the clock, and a login per role.

Idempotent: every row is found by a natural key before it is created, so a
second run changes nothing.  Manual shifts cover yesterday and today; weekly rotas
generate the days ahead; the 60 days of finished history before have shifts on the
rotas' pattern and the readers' eligibility history (``network.ReaderVersion``), so
the rule simulator can replay them.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.utils import timezone

from demo.rules import seed_demo_rules
from ingest.services import Request, instance_receive, instances_dicom_json_build
from ingest.storage import default_storage
from ingest.synthetic import SOP_CLASSES, StudySpec, make_instance
from network import services
from network.models import (
    CredentialStatus,
    Facility,
    FacilityAETitle,
    FacilityPrivilege,
    Jurisdiction,
    Leave,
    License,
    Priority,
    Radiologist,
    ReadingGroup,
    Region,
    Rota,
    Shift,
    Subspecialty,
)
from reporting.models import ReportTemplate
from reporting.services.templates import report_templates_seed
from studies.models import Study, StudyTransition
from studies.services import study_create, study_transition
from studies.sla import sla_due_at
from studies.states import StudyStatus

DEMO_PASSWORD = "demo-pass-2026"

JURISDICTIONS = [
    ("US-TX", "Texas", "America/Chicago"),
    ("US-NY", "New York", "America/New_York"),
    ("US-CA", "California", "America/Los_Angeles"),
    ("US-FL", "Florida", "America/New_York"),
    ("US-IL", "Illinois", "America/Chicago"),
    ("US-WA", "Washington", "America/Los_Angeles"),
    ("US-MA", "Massachusetts", "America/New_York"),
    ("IN-KA", "Karnataka", "Asia/Kolkata"),
    ("IN-MH", "Maharashtra", "Asia/Kolkata"),
    ("GB-ENG", "England", "Europe/London"),
    ("AU-NSW", "New South Wales", "Australia/Sydney"),
]

REGIONS = [
    ("us-tx-north", "North Texas", "US"),
    ("us-tx-south", "South Texas", "US"),
    ("us-northeast", "US Northeast", "US"),
    ("us-west", "US West Coast", "US"),
    ("us-southeast", "US Southeast", "US"),
    ("us-midwest", "US Midwest", "US"),
    ("in-south", "South India", "IN"),
    ("gb-south", "Southern England", "GB"),
    ("au-east", "Eastern Australia", "AU"),
]


@dataclass(frozen=True)
class DemoFacility:
    name: str
    group: str
    jurisdiction: str
    region: str
    tz: str
    lat: str
    lon: str
    ae_titles: tuple[str, ...]
    staff: str


MERIDIAN = "Meridian Teleradiology"
HARBOUR = "Harbour Reading Partners"

FACILITIES = [
    DemoFacility(
        "St. Mary's Regional Medical Center",
        MERIDIAN,
        "US-TX",
        "us-tx-north",
        "America/Chicago",
        "32.7767",
        "-96.7970",
        ("STMARY_CT", "STMARY_MR"),
        "staff.stmary",
    ),
    DemoFacility(
        "Gulf Coast Imaging Center",
        MERIDIAN,
        "US-TX",
        "us-tx-south",
        "America/Chicago",
        "29.7604",
        "-95.3698",
        ("GULFCOAST",),
        "staff.gulfcoast",
    ),
    DemoFacility(
        "Hudson Valley Hospital",
        MERIDIAN,
        "US-NY",
        "us-northeast",
        "America/New_York",
        "41.7004",
        "-73.9210",
        ("HUDSONVH",),
        "staff.hudson",
    ),
    DemoFacility(
        "Brooklyn Community Imaging",
        MERIDIAN,
        "US-NY",
        "us-northeast",
        "America/New_York",
        "40.6782",
        "-73.9442",
        ("BKLYN_IMG",),
        "staff.brooklyn",
    ),
    DemoFacility(
        "Pacific Coast Medical Center",
        MERIDIAN,
        "US-CA",
        "us-west",
        "America/Los_Angeles",
        "34.0522",
        "-118.2437",
        ("PACCOAST", "PACCOAST_ER"),
        "staff.pacific",
    ),
    DemoFacility(
        "Sunshine Orthopedic Clinic",
        MERIDIAN,
        "US-FL",
        "us-southeast",
        "America/New_York",
        "25.7617",
        "-80.1918",
        ("SUNORTHO",),
        "staff.sunshine",
    ),
    DemoFacility(
        "Lakeshore Children's Hospital",
        MERIDIAN,
        "US-IL",
        "us-midwest",
        "America/Chicago",
        "41.8781",
        "-87.6298",
        ("LAKESHORE",),
        "staff.lakeshore",
    ),
    DemoFacility(
        "Bengaluru Diagnostic Centre",
        MERIDIAN,
        "IN-KA",
        "in-south",
        "Asia/Kolkata",
        "12.9716",
        "77.5946",
        ("BLR_DIAG",),
        "staff.bengaluru",
    ),
    DemoFacility(
        "Thames Valley Imaging",
        HARBOUR,
        "GB-ENG",
        "gb-south",
        "Europe/London",
        "51.4543",
        "-0.9781",
        ("THAMESVAL",),
        "staff.thames",
    ),
    DemoFacility(
        "Harbour City Radiology",
        HARBOUR,
        "AU-NSW",
        "au-east",
        "Australia/Sydney",
        "-33.8688",
        "151.2093",
        ("HARBOURCITY",),
        "staff.harbour",
    ),
]

# MSH-4 (sending facility) of each demo facility's HL7 orders; the README lists them.
# The facility whose PACS is the demo's Orthanc (demo/management/commands/demo_pacs.py).
DEMO_PACS_FACILITY = "STMARY"
PACS_AE_TITLE = "DEMOPACS"
PACS_DICOM_PORT = 4242

HL7_SENDING_FACILITIES = {
    "St. Mary's Regional Medical Center": "STMARY",
    "Gulf Coast Imaging Center": "GULFCOAST",
    "Hudson Valley Hospital": "HUDSONVH",
    "Brooklyn Community Imaging": "BKLYN",
    "Pacific Coast Medical Center": "PACCOAST",
    "Sunshine Orthopedic Clinic": "SUNORTHO",
    "Lakeshore Children's Hospital": "LAKESHORE",
    "Bengaluru Diagnostic Centre": "BLRDIAG",
    "Thames Valley Imaging": "THAMESVAL",
    "Harbour City Radiology": "HARBOURCITY",
}

# (given name, family name, home region, time zone, subspecialties, group)
READERS = [
    ("Amelia", "Chen", "us-tx-north", "America/Chicago", ["neuro"], MERIDIAN),
    ("Marcus", "Okafor", "us-tx-south", "America/Chicago", ["msk", "emergency"], MERIDIAN),
    ("Priya", "Raman", "us-northeast", "America/New_York", ["body"], MERIDIAN),
    ("Daniel", "Whitaker", "us-northeast", "America/New_York", ["chest", "cardiac"], MERIDIAN),
    ("Sofia", "Alvarez", "us-west", "America/Los_Angeles", ["breast"], MERIDIAN),
    ("Jonah", "Feldman", "us-west", "America/Los_Angeles", ["neuro", "pediatric"], MERIDIAN),
    ("Grace", "Nakamura", "us-midwest", "America/Chicago", ["pediatric"], MERIDIAN),
    ("Tobias", "Lindqvist", "us-southeast", "America/New_York", ["msk"], MERIDIAN),
    ("Hannah", "Mbeki", "us-tx-north", "America/Chicago", ["emergency", "general"], MERIDIAN),
    ("Rafael", "Souza", "us-tx-south", "America/Chicago", ["body", "interventional"], MERIDIAN),
    ("Leah", "Goldberg", "us-northeast", "America/New_York", ["nuclear"], MERIDIAN),
    ("Omar", "Haddad", "us-midwest", "America/Chicago", ["chest"], MERIDIAN),
    ("Claire", "Dubois", "us-west", "America/Los_Angeles", ["general"], MERIDIAN),
    ("Ethan", "Brooks", "us-southeast", "America/New_York", ["neuro"], MERIDIAN),
    ("Mei", "Tanaka", "us-west", "America/Los_Angeles", ["body", "general"], MERIDIAN),
    ("Samuel", "Adeyemi", "us-tx-north", "America/Chicago", ["cardiac"], MERIDIAN),
    ("Isabel", "Moreno", "us-southeast", "America/New_York", ["breast", "general"], MERIDIAN),
    ("Victor", "Petrov", "us-northeast", "America/New_York", ["msk", "general"], MERIDIAN),
    ("Ananya", "Iyer", "in-south", "Asia/Kolkata", ["neuro", "general"], MERIDIAN),
    ("Rohan", "Kulkarni", "in-south", "Asia/Kolkata", ["body", "emergency"], MERIDIAN),
    ("Kavya", "Menon", "in-south", "Asia/Kolkata", ["chest", "general"], MERIDIAN),
    ("Arjun", "Reddy", "in-south", "Asia/Kolkata", ["msk"], MERIDIAN),
    ("Deepa", "Nair", "in-south", "Asia/Kolkata", ["emergency", "general"], MERIDIAN),
    ("Oliver", "Hughes", "gb-south", "Europe/London", ["neuro"], HARBOUR),
    ("Charlotte", "Evans", "gb-south", "Europe/London", ["body", "general"], HARBOUR),
    ("Harry", "Patel", "gb-south", "Europe/London", ["msk", "emergency"], HARBOUR),
    ("Isla", "Campbell", "au-east", "Australia/Sydney", ["chest", "general"], HARBOUR),
    ("Jack", "Nguyen", "au-east", "Australia/Sydney", ["emergency"], HARBOUR),
    ("Ruby", "Thompson", "au-east", "Australia/Sydney", ["breast", "general"], HARBOUR),
    ("Liam", "OConnor", "au-east", "Australia/Sydney", ["neuro", "msk"], HARBOUR),
]

US_STATES = ["US-TX", "US-NY", "US-CA", "US-FL", "US-IL", "US-WA", "US-MA"]
SHIFT_BANDS_UTC = [(0, 8), (8, 16), (16, 24)]
# Manual shifts for yesterday and today (history and the demo's first hours); from
# tomorrow each reader's weekly rota generates them (network.services.rota_save).
SHIFT_DAYS_BEFORE = 1
# One reader's leave, some days ahead: their rota makes no shift on those days.
LEAVE_READER, LEAVE_IN_DAYS, LEAVE_DAYS = "dr.okafor", 9, 3

DEMO_STUDIES = [
    # (facility index, modality, body part, description, priority, patient)
    (0, "CT", "HEAD", "CT HEAD WO CONTRAST", Priority.STAT, ("TX-100234", "DOE^JANE", "F")),
    (
        0,
        "MR",
        "BRAIN",
        "MRI BRAIN W WO CONTRAST",
        Priority.ROUTINE,
        ("TX-100877", "SMITH^ROBERT", "M"),
    ),
    (1, "CR", "CHEST", "XR CHEST 2 VIEWS", Priority.URGENT, ("GC-55012", "NGUYEN^LINH", "F")),
    (
        2,
        "CT",
        "ABDOMEN",
        "CT ABDOMEN PELVIS W CONTRAST",
        Priority.URGENT,
        ("HV-7781", "KOWALSKI^ADAM", "M"),
    ),
    (
        3,
        "US",
        "ABDOMEN",
        "US ABDOMEN COMPLETE",
        Priority.ROUTINE,
        ("BK-44120", "GARCIA^MARIA", "F"),
    ),
    (4, "CT", "CHEST", "CT CHEST PE PROTOCOL", Priority.STAT, ("PC-90001", "LEE^DAVID", "M")),
    (5, "MR", "KNEE", "MRI KNEE WO CONTRAST", Priority.ROUTINE, ("SO-3321", "JOHNSON^EMILY", "F")),
    (6, "DX", "CHEST", "XR CHEST PEDIATRIC", Priority.URGENT, ("LC-12009", "BROWN^NOAH", "M")),
    (7, "CT", "HEAD", "CT HEAD TRAUMA", Priority.STAT, ("BLR-88120", "SHARMA^RAVI", "M")),
    (
        8,
        "MG",
        "BREAST",
        "MAMMOGRAPHY SCREENING BILATERAL",
        Priority.ROUTINE,
        ("TV-61234", "TAYLOR^SARAH", "F"),
    ),
    (9, "CT", "ABDOMEN", "CT ABDOMEN ACUTE", Priority.URGENT, ("HC-20456", "WILSON^JAMES", "M")),
]


def _user(username: str, *, first: str = "", last: str = "", email: str = "") -> User:
    user, created = User.objects.get_or_create(
        username=username,
        defaults={
            "first_name": first,
            "last_name": last,
            "email": email or f"{username}@demo.test",
        },
    )
    if created:
        user.set_password(DEMO_PASSWORD)
        user.save(update_fields=["password"])
    return user


@transaction.atomic
def seed_demo(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Build (or leave as is) the demo network; returns row counts for the caller."""
    now = now or timezone.now()
    today = now.date()
    rng = random.Random(2026)  # noqa: S311 - demo data, not security

    for code, name, zone in JURISDICTIONS:
        Jurisdiction.objects.update_or_create(
            code=code, defaults={"country": code[:2], "name": name, "timezone": zone}
        )
    for code, name, country in REGIONS:
        Region.objects.get_or_create(code=code, defaults={"name": name, "country": country})
    groups = {
        name: ReadingGroup.objects.get_or_create(name=name)[0] for name in (MERIDIAN, HARBOUR)
    }

    superuser = _user("superuser", first="Site", last="Operator")
    if not superuser.is_superuser:
        superuser.is_superuser = superuser.is_staff = True
        superuser.save(update_fields=["is_superuser", "is_staff"])
    admin = _user("admin", first="Morgan", last="Reyes")
    services.reading_group_admin_grant(actor=None, user=admin, group=groups[MERIDIAN])
    admin.user_permissions.add(
        Permission.objects.get(content_type__app_label="audit", codename="view_auditevent")
    )
    harbour_admin = _user("admin.harbour", first="Alex", last="Morgan")
    services.reading_group_admin_grant(actor=None, user=harbour_admin, group=groups[HARBOUR])

    facilities = []
    for spec in FACILITIES:
        facility, _ = Facility.objects.get_or_create(
            reading_group=groups[spec.group],
            name=spec.name,
            defaults={
                "jurisdiction": Jurisdiction.objects.get(code=spec.jurisdiction),
                "region": Region.objects.get(code=spec.region),
                "timezone": spec.tz,
                "latitude": Decimal(spec.lat),
                "longitude": Decimal(spec.lon),
                "tat_stat_minutes": 30 if spec.jurisdiction.startswith("US") else 60,
                "tat_urgent_minutes": 120,
                "tat_routine_minutes": 720 if "Children" in spec.name else 1440,
            },
        )
        for title in spec.ae_titles:
            FacilityAETitle.objects.get_or_create(ae_title=title, defaults={"facility": facility})
        hl7_id = HL7_SENDING_FACILITIES.get(spec.name, "")
        if hl7_id and facility.hl7_sending_facility != hl7_id:
            Facility.objects.filter(pk=facility.pk).update(hl7_sending_facility=hl7_id)
            facility.hl7_sending_facility = hl7_id
        if hl7_id == DEMO_PACS_FACILITY and not facility.pacs_ae_title:
            # Its PACS is the demo's Orthanc (Procfile `pacs`, demo_pacs), which holds a
            # prior of the patient make_demo_dicom writes.
            Facility.objects.filter(pk=facility.pk).update(
                pacs_ae_title=PACS_AE_TITLE, pacs_host="127.0.0.1", pacs_port=PACS_DICOM_PORT
            )
        staff = _user(spec.staff)
        services.facility_staff_grant(actor=None, user=staff, facility=facility)
        facilities.append(facility)

    subspecialties = {s.code: s for s in Subspecialty.objects.all()}
    readers = []
    for index, (given, family, region, tz, subs, group_name) in enumerate(READERS):
        user = _user(f"dr.{family.lower()}", first=given, last=family)
        reader, created = Radiologist.objects.get_or_create(
            user=user,
            defaults={
                "reading_group": groups[group_name],
                "display_name": f"Dr. {given} {family}",
                "home_region": Region.objects.get(code=region),
                "timezone": tz,
                "workload_cap": 4 + index % 5,
            },
        )
        if created:
            reader.subspecialties.set([subspecialties[s] for s in subs])
        readers.append(reader)
        _seed_credentials(reader, index=index, rng=rng, today=today, facilities=facilities)
        _seed_shifts(reader, index=index, today=today)
        _seed_rota(reader, index=index, today=today)

    _seed_leave(today=today)
    _seed_past_shifts(readers, today=today)
    _seed_reader_history(readers, now=now)
    for group in groups.values():
        seed_demo_rules(group)
    report_templates_seed()
    _seed_studies(facilities, now=now)
    _seed_history(facilities, now=now)
    return {
        "facilities": Facility.objects.count(),
        "radiologists": Radiologist.objects.count(),
        "licenses": License.objects.count(),
        "privileges": FacilityPrivilege.objects.count(),
        "shifts": Shift.objects.count(),
        "rotas": Rota.objects.count(),
        "studies": Study.objects.count(),
        "report_templates": ReportTemplate.objects.count(),
    }


def _seed_credentials(
    reader: Radiologist,
    *,
    index: int,
    rng: random.Random,
    today: dt.date,
    facilities: list[Facility],
) -> None:
    home_country = reader.home_region.country
    if home_country == "US":
        jurisdictions = rng.sample(US_STATES, k=2 + index % 4)
    elif home_country == "IN":
        # Offshore nighthawks: licensed at home, preliminary reads for US sites.
        jurisdictions = ["IN-KA", "US-TX", "US-NY"]
    elif home_country == "GB":
        jurisdictions = ["GB-ENG"]
    else:
        jurisdictions = ["AU-NSW"]
    for n, code in enumerate(jurisdictions):
        scope = License.Scope.FINAL
        if home_country == "IN" and code.startswith("US"):
            scope = License.Scope.PRELIMINARY
        valid_to = today + dt.timedelta(days=365 + 30 * n)
        if index % 7 == 3 and n == 0:
            valid_to = today - dt.timedelta(days=20)  # lapsed: must never be offered there
        elif index % 9 == 4 and n == 0:
            valid_to = today + dt.timedelta(days=12)  # expiring soon: credential alerts
        License.objects.get_or_create(
            jurisdiction=Jurisdiction.objects.get(code=code),
            number=f"{code.split('-')[1]}-{10000 + index * 13 + n}",
            defaults={
                "radiologist": reader,
                "valid_from": today - dt.timedelta(days=700),
                "valid_to": valid_to,
                "scope": scope,
            },
        )
    licensed = {j for j in jurisdictions}
    for facility in facilities:
        if facility.reading_group_id != reader.reading_group_id:
            continue
        if facility.jurisdiction.code not in licensed and rng.random() > 0.15:
            continue
        status = (
            CredentialStatus.PENDING
            if (index + facility.pk) % 11 == 0
            else (CredentialStatus.ACTIVE)
        )
        FacilityPrivilege.objects.get_or_create(
            radiologist=reader,
            facility=facility,
            defaults={
                "status": status,
                "valid_from": today - dt.timedelta(days=365),
                "valid_to": today + dt.timedelta(days=365 * 2),
            },
        )


def _seed_shifts(reader: Radiologist, *, index: int, today: dt.date) -> None:
    # Three 8-hour bands cover every hour of the UTC day; readers rotate
    # through them so each band has about ten readers across subspecialties.
    start_hour, end_hour = SHIFT_BANDS_UTC[index % len(SHIFT_BANDS_UTC)]
    for offset in range(-SHIFT_DAYS_BEFORE, 1):
        day = today + dt.timedelta(days=offset)
        starts = dt.datetime.combine(day, dt.time(start_hour), tzinfo=dt.UTC)
        ends = starts + dt.timedelta(hours=end_hour - start_hour)
        Shift.objects.get_or_create(
            radiologist=reader, starts_at=starts, defaults={"ends_at": ends}
        )


def _seed_rota(reader: Radiologist, *, index: int, today: dt.date) -> None:
    """The reader's UTC band as a weekly rota in their own time zone (at today's
    offset: the band moves by an hour of UTC at their daylight-saving changes, as a
    real rota does), every day from tomorrow; saved through the service, which
    generates the shifts ahead."""
    if Rota.objects.filter(radiologist=reader).exists():
        return
    start_hour, end_hour = SHIFT_BANDS_UTC[index % len(SHIFT_BANDS_UTC)]
    zone = ZoneInfo(reader.timezone)
    starts_utc = dt.datetime.combine(today, dt.time(start_hour), tzinfo=dt.UTC)
    starts = starts_utc.astimezone(zone).time()
    ends = (starts_utc + dt.timedelta(hours=end_hour - start_hour)).astimezone(zone).time()
    for weekday in range(7):
        services.rota_save(
            actor=None,
            instance=Rota(
                radiologist=reader,
                weekday=weekday,
                starts_at=starts,
                ends_at=ends,
                valid_from=today + dt.timedelta(days=1),
            ),
        )


def _seed_leave(*, today: dt.date) -> None:
    reader = Radiologist.objects.filter(user__username=LEAVE_READER).first()
    if reader is None or Leave.objects.filter(radiologist=reader).exists():
        return
    starts = today + dt.timedelta(days=LEAVE_IN_DAYS)
    services.leave_save(
        actor=None,
        instance=Leave(
            radiologist=reader,
            starts_on=starts,
            ends_on=starts + dt.timedelta(days=LEAVE_DAYS - 1),
            reason="Conference",
        ),
    )


def _past_window_start(today: dt.date) -> dt.datetime:
    """Midnight UTC of the first of the HISTORY_DAYS days before the manual shifts:
    before the first history study of every facility, whatever its time zone."""
    first = today - dt.timedelta(days=SHIFT_DAYS_BEFORE + HISTORY_DAYS)
    return dt.datetime.combine(first, dt.time(0), tzinfo=dt.UTC)


def _seed_past_shifts(readers: list[Radiologist], *, today: dt.date) -> None:
    """Shifts over the HISTORY_DAYS days before the manual ones, on each reader's
    weekly rota pattern (its local times, on each past local day: the band moves by
    an hour of UTC across a daylight-saving change, as a real rota's does), so a
    replay of the history finds the readers on shift as they were.  Written in bulk
    as manual shifts (the rotas are valid from tomorrow); a slot that would overlap a
    shift the reader has already is left out, so a second run adds nothing."""
    since = _past_window_start(today)
    until = dt.datetime.combine(
        today - dt.timedelta(days=SHIFT_DAYS_BEFORE), dt.time(0), tzinfo=dt.UTC
    )
    reader_ids = [r.pk for r in readers]
    rotas: dict[int, list[Rota]] = {pk: [] for pk in reader_ids}
    for rota in Rota.objects.filter(radiologist_id__in=reader_ids).order_by("pk"):
        rotas[rota.radiologist_id].append(rota)
    taken: dict[int, list[tuple[dt.datetime, dt.datetime]]] = {pk: [] for pk in reader_ids}
    for reader_id, starts_at, ends_at in Shift.objects.filter(
        radiologist_id__in=reader_ids,
        starts_at__lt=until + dt.timedelta(days=2),
        ends_at__gt=since - dt.timedelta(days=2),
    ).values_list("radiologist_id", "starts_at", "ends_at"):
        taken[reader_id].append((starts_at, ends_at))
    new: list[Shift] = []
    for reader in readers:
        zone = ZoneInfo(reader.timezone)
        by_weekday = {r.weekday: r for r in rotas[reader.pk]}
        first = since.astimezone(zone).date() - dt.timedelta(days=1)
        for offset in range((until.astimezone(zone).date() - first).days + 1):
            this_day = first + dt.timedelta(days=offset)
            slot = by_weekday.get(this_day.weekday())
            if slot is None:
                continue
            end_day = this_day + dt.timedelta(days=0 if slot.ends_at > slot.starts_at else 1)
            starts = dt.datetime.combine(this_day, slot.starts_at, tzinfo=zone).astimezone(dt.UTC)
            ends = dt.datetime.combine(end_day, slot.ends_at, tzinfo=zone).astimezone(dt.UTC)
            if ends <= since or starts >= until or ends <= starts:
                continue
            if any(starts < e and s < ends for s, e in taken[reader.pk]):
                continue
            taken[reader.pk].append((starts, ends))
            new.append(Shift(radiologist=reader, starts_at=starts, ends_at=ends))
    Shift.objects.bulk_create(new, batch_size=1000)


# Backdated changes of the readers' facts during the history, so a replay of it meets
# what a real network has: a license suspended for a week three weeks ago (the reader
# is not offered that state's studies meanwhile), and a reader paused one afternoon.
SUSPENDED_LICENSE_READER, SUSPENDED_DAYS_AGO, SUSPENDED_DAYS = "dr.chen", 21, 7
PAUSED_READER, PAUSED_DAYS_AGO, PAUSED_AT_UTC, PAUSED_HOURS = "dr.mbeki", 10, 19, 4


def _seed_reader_history(readers: list[Radiologist], *, now: dt.datetime) -> None:
    """The readers' eligibility history (``network.ReaderVersion``) over the seeded
    days: a first version of each reader just before the history window (their facts
    then, the past shifts included: a version holds the shifts not ended when it is
    recorded), then the backdated changes above, each as versions in order with the
    facts as they were then; the live rows are put back as they were, so the tables
    say what is true now.  Readers with a version from before the window already are
    left alone, so a second run writes nothing."""
    from network.history import reader_versions_record
    from network.models import ReaderVersion

    first_at = _past_window_start(now.date()) - dt.timedelta(minutes=1)
    missing = [
        r.pk
        for r in readers
        if not ReaderVersion.objects.filter(radiologist=r, recorded_at__lte=first_at).exists()
    ]
    if not missing:
        return
    reader_versions_record(radiologist_ids=missing, at=first_at)
    day = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)

    suspended = (
        License.objects.filter(
            radiologist__user__username=SUSPENDED_LICENSE_READER,
            radiologist_id__in=missing,
            status=CredentialStatus.ACTIVE,
            valid_to__gt=now.date(),
        )
        .order_by("jurisdiction__code")
        .first()
    )
    if suspended is not None:
        starts = day - dt.timedelta(days=SUSPENDED_DAYS_AGO) + dt.timedelta(hours=15)
        License.objects.filter(pk=suspended.pk).update(status=CredentialStatus.SUSPENDED)
        reader_versions_record(radiologist_ids=[suspended.radiologist_id], at=starts)
        License.objects.filter(pk=suspended.pk).update(status=suspended.status)
        reader_versions_record(
            radiologist_ids=[suspended.radiologist_id],
            at=starts + dt.timedelta(days=SUSPENDED_DAYS),
        )

    paused = Radiologist.objects.filter(
        user__username=PAUSED_READER, pk__in=missing, is_available=True
    ).first()
    if paused is not None:
        starts = day - dt.timedelta(days=PAUSED_DAYS_AGO) + dt.timedelta(hours=PAUSED_AT_UTC)
        ends = starts + dt.timedelta(hours=PAUSED_HOURS)
        live = Radiologist.objects.filter(pk=paused.pk)
        live.update(is_available=False, paused_until=ends, pause_reason="Family matter")
        reader_versions_record(radiologist_ids=[paused.pk], at=starts)
        live.update(
            is_available=paused.is_available,
            paused_until=paused.paused_until,
            pause_reason=paused.pause_reason,
        )
        reader_versions_record(radiologist_ids=[paused.pk], at=ends)


def _seed_studies(facilities: list[Facility], *, now: dt.datetime) -> None:
    for n, (fac_index, modality, body, description, priority, patient) in enumerate(
        DEMO_STUDIES, start=1
    ):
        uid = f"2.25.{2026112200000 + n}"
        if Study.objects.filter(study_instance_uid=uid).exists():
            continue
        patient_id, name, sex = patient
        study = study_create(
            facility=facilities[fac_index],
            study_instance_uid=uid,
            # Minutes ago, inside every priority's target: the demo opens with
            # studies waiting, not with studies already breached.
            received_at=now - dt.timedelta(minutes=n),
            priority=priority,
            accession_number=f"DEMO{n:05d}",
            patient_id=patient_id,
            patient_name=name,
            patient_sex=sex,
            patient_birth_date=dt.date(1950 + 3 * n, 1 + n % 12, 1 + n),
            modality=modality,
            body_part=body,
            study_description=description,
            study_date=now.date(),
        )
        # Its images, through the gateway's filing service, before it is ready.
        _seed_images(study, facilities[fac_index])
        study_transition(study_id=study.pk, to_status=StudyStatus.READY, reason="demo seed")
        instances_dicom_json_build(storage=default_storage(), study_ids=[study.pk])


# Per modality: (series, images per series, rows, columns) of a demo study's images.
DEMO_IMAGES = {"CT": (2, 16, 256, 256), "MR": (2, 16, 256, 256)}
DEMO_IMAGES_OTHER = (1, 2, 256, 256)


def _seed_images(study: Study, facility: Facility) -> None:
    """File a demo study's images (a head-like phantom, so the viewer shows a
    picture) as the DICOM gateway would, sent by the facility's first AE title."""
    storage = default_storage()
    calling_ae = facility.ae_titles.values_list("ae_title", flat=True).first() or "DEMO"
    modality = study.modality if study.modality in SOP_CLASSES else "CT"
    spec = StudySpec(
        modality=modality,
        body_part=study.body_part,
        description=study.study_description,
        patient_id=study.patient_id,
        patient_name=study.patient_name,
        birth_date=study.patient_birth_date.strftime("%Y%m%d") if study.patient_birth_date else "",
        sex=study.patient_sex,
        accession=study.accession_number,
        study_uid=study.study_instance_uid,
    )
    series_count, images, rows, columns = DEMO_IMAGES.get(modality, DEMO_IMAGES_OTHER)
    for series_number in range(1, series_count + 1):
        series_uid = f"{study.study_instance_uid}.{series_number}"
        for number in range(1, images + 1):
            ds = make_instance(
                spec,
                series_uid=series_uid,
                number=number,
                rows=rows,
                columns=columns,
                phantom=(number - 1, images),
            )
            ds.SeriesNumber = series_number
            ds.SeriesDescription = (
                f"{study.study_description} {'AXIAL' if series_number == 1 else 'CORONAL'}"
            )
            staged = storage.staging_dir() / f"demo-{ds.SOPInstanceUID}.dcm"
            ds.save_as(staged, enforce_file_format=True)
            instance_receive(
                storage=storage,
                staged_path=staged,
                request=Request(
                    facility_id=facility.pk,
                    calling_ae=calling_ae,
                    sop_class_uid=str(ds.SOPClassUID),
                    sop_instance_uid=str(ds.SOPInstanceUID),
                ),
            )


# --- Finished history, so the turnaround portal has something to show -------
HISTORY_DAYS = 60
HISTORY_UID_ROOT = "2.25.2026112299"
# Per priority: minutes to a claim (median) and to read; STAT fastest.
HISTORY_PACE = {
    Priority.STAT: (6.0, 14.0),
    Priority.URGENT: (25.0, 30.0),
    Priority.ROUTINE: (150.0, 45.0),
}
HISTORY_MODALITIES = [
    ("CT", "HEAD", "CT HEAD WITHOUT CONTRAST"),
    ("CT", "CHEST", "CT CHEST PE PROTOCOL"),
    ("CT", "ABDOMEN", "CT ABDOMEN PELVIS WITH CONTRAST"),
    ("MR", "BRAIN", "MRI BRAIN WITH AND WITHOUT CONTRAST"),
    ("MR", "LSPINE", "MRI LUMBAR SPINE"),
    ("CR", "CHEST", "XR CHEST 2 VIEWS"),
    ("US", "ABDOMEN", "US ABDOMEN COMPLETE"),
]


def _seed_history(facilities: list[Facility], *, now: dt.datetime) -> None:
    """Finished studies over the last HISTORY_DAYS days for every facility (a few a
    day, mostly in local daytime; some late), written in bulk with their
    transitions.  A facility that has its history already is left alone, so a
    second run changes nothing."""
    readers_by_group: dict[int, list[Radiologist]] = {}
    for reader in Radiologist.objects.order_by("pk"):
        readers_by_group.setdefault(reader.reading_group_id, []).append(reader)
    for index, facility in enumerate(facilities):
        prefix = f"{HISTORY_UID_ROOT}.{index + 1}."
        if Study.objects.filter(study_instance_uid__startswith=prefix).exists():
            continue
        readers = readers_by_group.get(facility.reading_group_id, [])
        if not readers:
            continue
        rng = random.Random(f"history-{index}")  # noqa: S311 - demo data
        studies, lives = _history_studies(facility, readers, prefix=prefix, now=now, rng=rng)
        created = Study.objects.bulk_create(studies)
        StudyTransition.objects.bulk_create(
            StudyTransition(study=study, from_status=before, to_status=after, at=at)
            for study, life in zip(created, lives, strict=True)
            for before, after, at in life
        )


def _history_studies(
    facility: Facility,
    readers: list[Radiologist],
    *,
    prefix: str,
    now: dt.datetime,
    rng: random.Random,
) -> tuple[list[Study], list[list[tuple[str, str, dt.datetime]]]]:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(facility.timezone)
    today = now.astimezone(tz).date()
    studies: list[Study] = []
    lives: list[list[tuple[str, str, dt.datetime]]] = []
    n = 0
    for days_ago in range(HISTORY_DAYS, 0, -1):
        day = today - dt.timedelta(days=days_ago)
        for _ in range(rng.randint(4, 9) if day.weekday() < 5 else rng.randint(2, 5)):
            n += 1
            # Local daytime mostly, some overnight.
            hour = rng.choice([*range(7, 20)] * 3 + [*range(24)])
            received = dt.datetime.combine(
                day, dt.time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=tz
            ).astimezone(dt.UTC)
            priority = rng.choices(list(HISTORY_PACE), weights=[15, 30, 55])[0]
            to_claim, to_read = HISTORY_PACE[Priority(priority)]
            ready = received + dt.timedelta(minutes=rng.uniform(1, 4))
            claimed = ready + dt.timedelta(minutes=rng.lognormvariate(0, 0.6) * to_claim)
            final = claimed + dt.timedelta(minutes=rng.lognormvariate(0, 0.5) * to_read)
            modality, body, description = rng.choice(HISTORY_MODALITIES)
            reader = rng.choice(readers)
            S = StudyStatus
            studies.append(
                Study(
                    study_instance_uid=f"{prefix}{n}",
                    accession_number=f"H{facility.pk:02d}{n:05d}"[:16],
                    facility=facility,
                    patient_id=f"HX-{facility.pk}-{rng.randrange(10000, 99999)}",
                    patient_name=rng.choice(HISTORY_PATIENTS),
                    patient_jurisdiction=facility.jurisdiction,
                    modality=modality,
                    body_part=body,
                    study_description=description,
                    study_date=day,
                    priority=priority,
                    status=S.FINAL,
                    assigned_radiologist=reader,
                    received_at=received,
                    last_instance_at=ready,
                    ready_at=ready,
                    offered_at=ready,
                    claimed_at=claimed,
                    finalized_at=final,
                    claim_activity_at=final,
                    sla_due_at=sla_due_at(
                        received_at=received, tat_minutes=facility.tat_minutes(priority)
                    ),
                )
            )
            lives.append(
                [
                    (S.RECEIVING, S.READY, ready),
                    (S.READY, S.OFFERED, ready),
                    (S.OFFERED, S.CLAIMED, claimed),
                    (S.CLAIMED, S.FINAL, final),
                ]
            )
    return studies, lives


HISTORY_PATIENTS = [
    "GARCIA^MARIA",
    "NGUYEN^ANH",
    "SMITH^JOHN",
    "PATEL^RAVI",
    "JOHNSON^LINDA",
    "KIM^JISOO",
    "BROWN^ROBERT",
    "LOPEZ^CARLOS",
    "DAVIS^EMMA",
    "MILLER^OLIVIA",
]
