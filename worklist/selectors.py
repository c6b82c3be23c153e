"""What a radiologist sees: the studies offered to them, most urgent first."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db.models import F, Q, QuerySet

from network.models import Radiologist
from routing.eligibility import CandidateFacts, Credential
from routing.selectors import READER_STATE_COLUMNS, credential_from_row, reader_state_params
from studies.models import Study
from studies.states import StudyStatus

# The worklist order, on the offer's copies of the study's sort keys, so that the
# database walks one index (offer_worklist_idx) and stops after a page.
WORKLIST_ORDER = ("wl_priority", "wl_due", "wl_received", "id")


def _on_worklist_of(radiologist: Radiologist) -> Q:
    """Studies with an open, unheld offer to the reader, as one condition (one join
    to worklist_offer, which annotations and ordering on ``offers__`` then reuse)."""
    return Q(
        offers__radiologist=radiologist,
        offers__withdrawn_at__isnull=True,
        offers__held_at__isnull=True,
    )


def worklist_for_reader(*, radiologist: Radiologist) -> QuerySet[Study]:
    """Studies on offer to the reader: priority, then SLA due time, then arrival.

    Read from the reader's open, unheld offers (only offered studies have any),
    so the query is one join with no status filter for the planner to misjudge.
    The annotations reuse that one join (annotate after filter on the relation).
    """
    return (
        Study.objects.filter(_on_worklist_of(radiologist))
        .annotate(
            wl_priority=F("offers__priority"),
            wl_due=F("offers__sla_due_at"),
            wl_received=F("offers__received_at"),
            offer_tier=F("offers__tier"),
            wl_facility=F("offers__facility_id"),
            wl_rule=F("offers__rule_id"),
            relative_value=F("routing__relative_value"),
            rule_name=F("routing__rule__name"),
        )
        .select_related("facility")
        .order_by(*WORKLIST_ORDER)
    )


def claim_candidates(*, radiologist: Radiologist) -> QuerySet[Study]:
    """The top of the reader's worklist for "next case", locked with SKIP LOCKED by
    the caller: only what claiming needs is joined (the facility's group, the
    jurisdiction's code and the routing rule for the eligibility re-check)."""
    return (
        Study.objects.filter(_on_worklist_of(radiologist))
        .order_by("offers__priority", "offers__sla_due_at", "offers__received_at", "id")
        .select_related("facility", "patient_jurisdiction", "routing__rule")
    )


def claim_reader_facts(
    *, study: Study, radiologist_id: int, rule_id: int, at: dt.datetime
) -> tuple[CandidateFacts, frozenset[str]] | None:
    """What routing's ``judge`` needs to decide whether one reader may read one
    study now, and the codes of the subspecialties the rule requires, in two
    statements; None if the reader does not read for the study's facility's group
    (``routing.services.why_not`` has no verdict for them either).

    The same facts as ``routing.selectors.candidate_facts`` for one named reader
    (shift, open claims, cap, licenses in the jurisdiction, privileges at the
    facility, subspecialties), without what only ranks the eligible: the tier and
    the recent work are left at 0, so the verdict's eligibility and reasons are
    routing's, its tier and load are not.  tests/worklist pins the equivalence.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT r.display_name, r.reading_group_id, {READER_STATE_COLUMNS}
            FROM network_radiologist r
            WHERE r.id = %s
            """,  # noqa: S608 - a fixed column list
            [*reader_state_params(at), radiologist_id],
        )
        row = cursor.fetchone()
        if row is None or row[1] != study.facility.reading_group_id:
            return None
        cursor.execute(
            """
            SELECT 'l', l.valid_from, l.valid_to, l.status, l.scope
            FROM network_license l
            WHERE l.radiologist_id = %s AND l.jurisdiction_id = %s
            UNION ALL
            SELECT 'p', p.valid_from, p.valid_to, p.status, ''
            FROM network_facilityprivilege p
            WHERE p.radiologist_id = %s AND p.facility_id = %s
            UNION ALL
            SELECT 's', NULL, NULL, s.code, ''
            FROM network_radiologist_subspecialties rs
            JOIN network_subspecialty s ON s.id = rs.subspecialty_id
            WHERE rs.radiologist_id = %s
            UNION ALL
            SELECT 'r', NULL, NULL, s.code, ''
            FROM routing_routingrule_subspecialties rr
            JOIN network_subspecialty s ON s.id = rr.subspecialty_id
            WHERE rr.routingrule_id = %s
            """,
            [
                radiologist_id,
                study.patient_jurisdiction_id,
                radiologist_id,
                study.facility_id,
                radiologist_id,
                rule_id,
            ],
        )
        rows = cursor.fetchall()
    name, _, active, available, on_shift, open_claims, cap = row
    licenses: list[Credential] = []
    privileges: list[Credential] = []
    subspecialties: set[str] = set()
    required: set[str] = set()
    for kind, valid_from, valid_to, status, scope in rows:
        if kind == "s":
            subspecialties.add(str(status))
        elif kind == "r":
            required.add(str(status))
        else:
            key = study.patient_jurisdiction.code if kind == "l" else str(study.facility_id)
            credential = credential_from_row(
                key, valid_from, valid_to, status, scope, is_license=kind == "l"
            )
            (licenses if kind == "l" else privileges).append(credential)
    facts = CandidateFacts(
        radiologist_id=radiologist_id,
        name=name,
        tier=0,
        active=bool(active),
        available=bool(available),
        on_shift=bool(on_shift),
        subspecialties=frozenset(subspecialties),
        licenses=tuple(licenses),
        privileges=tuple(privileges),
        open_claims=int(open_claims),
        workload_cap=cap,
    )
    return facts, frozenset(required)


def cases_for_reader(*, radiologist: Radiologist) -> QuerySet[Study]:
    """The reader's claimed cases not yet final."""
    return (
        Study.objects.filter(
            assigned_radiologist=radiologist,
            status__in=[StudyStatus.CLAIMED, StudyStatus.PRELIMINARY],
        )
        .select_related("facility")
        .order_by("priority", "sla_due_at", "id")
    )
