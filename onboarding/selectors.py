"""Reads for onboarding a facility: which facility an admin may check, and its
checklist (what the gateway, the HL7 listener, priors, result delivery, routing and
the readers need of it), each item ok, missing or a warning, with what to do."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, TextChoices
from rest_framework.exceptions import NotFound, PermissionDenied

from network.models import CredentialStatus, Facility, FacilityPrivilege, License
from network.selectors import AnyUser, facility_list_administered, facility_list_visible
from network.validity import validity_window
from reporting.models import FacilityEndpoint
from reporting.transport import fhir_url_refusal
from routing.selectors import rule_keys_for_group


class ItemStatus(TextChoices):
    """The state of a checklist item."""

    OK = "ok", "ok"
    WARNING = "warning", "warning: works, but check it"
    MISSING = "missing", "missing: the facility cannot work without it"


OK = ItemStatus.OK.value
MISSING = ItemStatus.MISSING.value
WARNING = ItemStatus.WARNING.value
_SEVERITY = {OK: 0, WARNING: 1, MISSING: 2}

PEER_PACS = "pacs"
PEER_ENDPOINT = "endpoint"


def facility_administered_get(*, user: AnyUser, facility_id: int) -> Facility:
    """The facility if ``user`` administers its reading group; a facility they only
    see (as its staff or a reader there) is 403, any other 404."""
    facility = (
        facility_list_administered(user=user)
        .select_related("reading_group", "jurisdiction")
        .filter(pk=facility_id)
        .first()
    )
    if facility is not None:
        return facility
    if facility_list_visible(user=user).filter(pk=facility_id).exists():
        raise PermissionDenied("Only an admin of the facility's reading group may do this.")
    raise NotFound("No such facility.")


def facility_endpoint_of(*, facility: Facility) -> FacilityEndpoint | None:
    """The facility's result endpoint (one at most), if it has one."""
    return FacilityEndpoint.objects.filter(facility_id=facility.pk).first()


@dataclass(frozen=True)
class ChecklistItem:
    """One thing a facility needs: its state (ok / missing / warning), what we found,
    what to do about it, the facts behind it, and the peer a connection test reaches
    ("pacs", "endpoint") if any."""

    key: str
    title: str
    status: str
    summary: str
    action: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    test: str = ""


@dataclass(frozen=True)
class Checklist:
    facility: Facility
    items: list[ChecklistItem]

    @property
    def status(self) -> str:
        """The worst state of its items."""
        return max((i.status for i in self.items), key=_SEVERITY.__getitem__, default=OK)


def _ae_titles(facility: Facility, titles: list[str]) -> ChecklistItem:
    # The gateway admits an association whose calling AE title is one of an active
    # facility's titles, from an address on its allow-list (any when empty).
    networks = list(facility.dicom_allowed_networks or [])
    rows: list[dict[str, Any]] = [
        {"ae_title": t, "admitted": facility.is_active, "source": "facility"} for t in titles
    ]
    if facility.has_pacs and facility.pacs_ae_title not in titles:
        # The PACS sends the priors we ask for (C-MOVE) as itself: the gateway admits
        # its title for this facility too.
        rows.append(
            {"ae_title": facility.pacs_ae_title, "admitted": facility.is_active, "source": "pacs"}
        )
    data = {"ae_titles": rows, "allowed_networks": networks}
    where = ", ".join(networks) if networks else "any address"
    named = ", ".join(
        f"{r['ae_title']} (PACS)" if r["source"] == "pacs" else r["ae_title"] for r in rows
    )
    if not titles:
        return ChecklistItem(
            "ae_titles",
            "DICOM AE titles",
            MISSING,
            "No AE title: the gateway refuses every association from this facility.",
            "Add the AE titles its modalities and PACS send from (the facility's admin "
            f"page, or PATCH /api/v1/facilities/{facility.pk}/ with ae_titles).",
            data,
        )
    if not facility.is_active:
        return ChecklistItem(
            "ae_titles",
            "DICOM AE titles",
            WARNING,
            f"{named}: not admitted, the facility is inactive.",
            "Activate the facility when it is ready to send.",
            data,
        )
    return ChecklistItem(
        "ae_titles",
        "DICOM AE titles",
        OK,
        f"{named}: admitted by the gateway from {where}.",
        "",
        data,
    )


def _hl7(facility: Facility) -> ChecklistItem:
    sender = facility.hl7_sending_facility
    networks = list(facility.hl7_allowed_networks or [])
    data = {"hl7_sending_facility": sender, "allowed_networks": networks}
    if not sender:
        return ChecklistItem(
            "hl7",
            "HL7 sending facility",
            MISSING,
            "No HL7 sending facility: orders from this facility are refused (AR).",
            "Set hl7_sending_facility to the MSH-4 its HIS/RIS sends.",
            data,
        )
    where = ", ".join(networks) if networks else "any address"
    return ChecklistItem(
        "hl7", "HL7 sending facility", OK, f"MSH-4 {sender!r}, accepted from {where}.", "", data
    )


def _pacs(facility: Facility) -> ChecklistItem:
    data: dict[str, Any] = {
        "configured": facility.has_pacs,
        "ae_title": facility.pacs_ae_title,
        "host": facility.pacs_host,
        "port": facility.pacs_port,
    }
    if not facility.has_pacs:
        return ChecklistItem(
            "pacs",
            "PACS (relevant priors)",
            WARNING,
            "No PACS: studies are read without priors.",
            "Set the PACS's AE title, host and port "
            f"(PATCH /api/v1/facilities/{facility.pk}/ pacs).",
            data,
        )
    where = f"{facility.pacs_ae_title} at {facility.pacs_host}:{facility.pacs_port}"
    return ChecklistItem(
        "pacs",
        "PACS (relevant priors)",
        OK,
        f"{where}; test it with a C-ECHO.",
        "",
        data,
        test=PEER_PACS,
    )


def _endpoint(endpoint: FacilityEndpoint | None) -> ChecklistItem:
    title = "Result endpoint"
    if endpoint is None:
        return ChecklistItem(
            "result_endpoint",
            title,
            MISSING,
            "No result endpoint: results are only served on request (API, portal, PDF).",
            "Add the facility's MLLP listener or FHIR server (admin: Reporting > "
            "Facility endpoints).",
            {"endpoint": None},
        )
    data = {
        "endpoint": {
            "id": endpoint.pk,
            "kind": endpoint.kind,
            "host": endpoint.host,
            "port": endpoint.port,
            "url": endpoint.url,
            "active": endpoint.active,
            "timeout_seconds": endpoint.timeout_seconds,
        }
    }
    if not endpoint.active:
        return ChecklistItem(
            "result_endpoint",
            title,
            WARNING,
            f"{endpoint} is inactive: results are not sent.",
            "Activate it once a connection test passes.",
            data,
            test=PEER_ENDPOINT,
        )
    if endpoint.kind == FacilityEndpoint.Kind.FHIR_HTTPS:
        refusal = fhir_url_refusal(endpoint.url)
        if refusal is not None:
            return ChecklistItem(
                "result_endpoint", title, WARNING, refusal, "Correct the URL.", data
            )
    return ChecklistItem(
        "result_endpoint",
        title,
        OK,
        f"{endpoint}; test it with a test message.",
        "",
        data,
        test=PEER_ENDPOINT,
    )


def _readers(facility: Facility, now: dt.datetime) -> ChecklistItem:
    # Valid at ``now`` as routing judges it: a privilege in the facility's time zone, a
    # license in the jurisdiction's (network.validity).  A civil date anywhere is within
    # a day of the UTC date, so only rows in that band are read, then judged.
    near = Q(
        status=CredentialStatus.ACTIVE,
        valid_from__lte=now.date() + dt.timedelta(days=1),
        valid_to__gte=now.date() - dt.timedelta(days=1),
    )
    rows = list(
        dict.fromkeys(
            (pk, name)
            for pk, name, valid_from, valid_to, until in FacilityPrivilege.objects.filter(
                near, facility_id=facility.pk
            )
            .order_by("radiologist__display_name", "radiologist_id")
            .values_list(
                "radiologist_id",
                "radiologist__display_name",
                "valid_from",
                "valid_to",
                "valid_until_time",
            )
            if _valid_at(now, valid_from, valid_to, until, facility.timezone)
        )
    )
    licensed = {
        pk
        for pk, valid_from, valid_to, until, zone in License.objects.filter(
            near,
            jurisdiction_id=facility.jurisdiction_id,
            radiologist_id__in=[pk for pk, _ in rows],
        ).values_list(
            "radiologist_id", "valid_from", "valid_to", "valid_until_time", "jurisdiction__timezone"
        )
        if _valid_at(now, valid_from, valid_to, until, zone)
    }
    readers = [{"id": pk, "name": name, "licensed": pk in licensed} for pk, name in rows]
    data = {"count": len(readers), "readers": readers}
    if not readers:
        return ChecklistItem(
            "privileges",
            "Readers privileged now",
            MISSING,
            "Nobody is privileged here now: no study of this facility can be offered.",
            "Grant privileges (POST /api/v1/privileges/bulk-grant/, or copy another "
            f"facility's with POST /api/v1/facilities/{facility.pk}/privileges/copy/).",
            data,
        )
    unlicensed = [str(r["name"]) for r in readers if not r["licensed"]]
    summary = f"{len(readers)}: " + ", ".join(str(r["name"]) for r in readers) + "."
    if unlicensed:
        return ChecklistItem(
            "privileges",
            "Readers privileged now",
            WARNING,
            summary,
            f"Not licensed in {facility.jurisdiction.code} now, so never offered this "
            f"facility's studies: {', '.join(unlicensed)}.",
            data,
        )
    return ChecklistItem("privileges", "Readers privileged now", OK, summary, "", data)


def _rules(facility: Facility) -> ChecklistItem:
    matching = []
    for key, rule in rule_keys_for_group(reading_group_id=facility.reading_group_id):
        if key.is_default:
            scope = "default"
        elif not key.facility_ids:
            scope = "any facility"
        elif facility.pk in key.facility_ids:
            scope = "this facility"
        else:
            continue
        criteria = {
            "modalities": sorted(key.modalities),
            "body_parts": sorted(key.body_parts),
            "priorities": sorted(key.priorities),
            "flags": sorted(key.flags),
            "description_pattern": key.description_pattern,
            "procedure_code_pattern": key.procedure_code_pattern,
        }
        matching.append(
            {
                "id": rule.pk,
                "name": rule.name,
                "scope": scope,
                "criteria": {k: v for k, v in criteria.items() if v},
            }
        )
    data = {"rules": matching}
    title = "Routing rules that match"
    if not matching:
        return ChecklistItem(
            "routing_rules",
            title,
            MISSING,
            "No active routing rule matches this facility: its studies are unroutable.",
            "Add a rule for it, or a default rule for the reading group (admin: Routing "
            "rules, or POST /api/v1/routing-rules/).",
            data,
        )
    names = ", ".join(f"{r['name']} ({r['scope']})" for r in matching)
    if all(r["scope"] == "default" for r in matching):
        return ChecklistItem(
            "routing_rules",
            title,
            WARNING,
            f"Only the default rule: {names}.",
            "Check that the default rule's subspecialties and timers suit this facility, "
            "or add a rule naming it.",
            data,
        )
    return ChecklistItem("routing_rules", title, OK, names + ".", "", data)


def _turnaround(facility: Facility) -> ChecklistItem:
    data = {
        "stat_minutes": facility.tat_stat_minutes,
        "urgent_minutes": facility.tat_urgent_minutes,
        "routine_minutes": facility.tat_routine_minutes,
    }
    return ChecklistItem(
        "turnaround",
        "Turnaround targets",
        OK,
        f"STAT {facility.tat_stat_minutes} min, urgent {facility.tat_urgent_minutes} min, "
        f"routine {facility.tat_routine_minutes} min (receipt to final report).",
        "",
        data,
    )


def _valid_at(
    now: dt.datetime, valid_from: dt.date, valid_to: dt.date, until: dt.time | None, zone: str
) -> bool:
    starts_at, ends_at = validity_window(valid_from, valid_to, until, zone)
    return starts_at <= now < ends_at


def facility_checklist(*, facility: Facility, now: dt.datetime) -> Checklist:
    """What the facility still needs to send studies and orders and receive results,
    at ``now``: a handful of statements, whatever the number of readers or rules."""
    titles = list(facility.ae_titles.order_by("ae_title").values_list("ae_title", flat=True))
    return Checklist(
        facility=facility,
        items=[
            _ae_titles(facility, titles),
            _hl7(facility),
            _pacs(facility),
            _endpoint(facility_endpoint_of(facility=facility)),
            _readers(facility, now),
            _rules(facility),
            _turnaround(facility),
        ],
    )
