"""Facts for routing, gathered with a few set-based queries (never one per reader)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from django.db import connection
from django.db.models import (
    Exists,
    OuterRef,
    Q,
    QuerySet,
    Value,
)
from django.utils import timezone

from network.models import (
    CredentialStatus,
    Facility,
    FacilityPrivilege,
    Jurisdiction,
    License,
    Priority,
    Radiologist,
    Shift,
)
from network.validity import validity_window
from routing.eligibility import (
    KEEP_OFFER,
    ROUTE,
    CandidateFacts,
    Credential,
    StudyFacts,
    Verdict,
    tier_of,
)
from routing.models import (
    LAST_TIER,
    FacilityTierPool,
    ReaderPool,
    RoutingDecision,
    RoutingRule,
    StudyRouting,
)
from routing.rules import RuleKey, StudyKey, first_match
from studies.models import Study
from studies.states import StudyStatus
from teleradiology.sql import in_ids, literal_rows
from worklist.selectors import open_offers_of_live_studies

RECENT_WORK_WINDOW = dt.timedelta(hours=8)


def rules_requiring(*, subspecialty_code: str) -> QuerySet[RoutingRule, int]:
    """Ids of the rules that require (or accept) the subspecialty."""
    return RoutingRule.objects.filter(subspecialties__code=subspecialty_code).values_list(
        "id", flat=True
    )


def rule_keys_for_group(*, reading_group_id: int) -> list[tuple[RuleKey, RoutingRule]]:
    """The group's active rules in order, as match keys (three plain queries: the
    rules, their facilities, their subspecialty codes)."""
    rules = list(
        RoutingRule.objects.filter(reading_group_id=reading_group_id, is_active=True).order_by(
            "is_default", "position", "id"
        )
    )
    ids = [r.pk for r in rules]
    facilities: dict[int, set[int]] = defaultdict(set)
    for rule_id, facility_id in RoutingRule.facilities.through.objects.filter(
        routingrule_id__in=ids
    ).values_list("routingrule_id", "facility_id"):
        facilities[rule_id].add(facility_id)
    required: dict[int, set[str]] = defaultdict(set)
    for rule_id, code in RoutingRule.subspecialties.through.objects.filter(
        routingrule_id__in=ids
    ).values_list("routingrule_id", "subspecialty__code"):
        required[rule_id].add(code)
    keyed = []
    for r in rules:
        r.required_subspecialties_known(frozenset(required[r.pk]))
        keyed.append(
            (
                RuleKey(
                    rule_id=r.pk,
                    is_default=r.is_default,
                    facility_ids=frozenset(facilities[r.pk]),
                    modalities=frozenset(str(m).upper() for m in r.modalities),
                    body_parts=frozenset(str(b).upper() for b in r.body_parts),
                    description_pattern=r.description_pattern,
                    procedure_code_pattern=r.procedure_code_pattern,
                    priorities=frozenset(int(p) for p in r.priorities),
                    flags=frozenset(str(f) for f in r.flags),
                ),
                r,
            )
        )
    return keyed


def _study_key(study: Study) -> StudyKey:
    return StudyKey(
        facility_id=study.facility_id,
        modality=study.modality,
        body_part=study.body_part,
        description=study.study_description,
        procedure_code=study.procedure_code,
        priority=study.priority,
        flags=frozenset(str(f) for f in (study.flags or [])),
    )


# Each reading group's rules as last read by this process, with the group's
# rules_version then: database triggers give the group a new version whenever a
# rule changes, so rules are read again exactly when they changed.
_RULES_READ: dict[int, tuple[int, list[tuple[RuleKey, RoutingRule]]]] = {}


def group_rules(*, study: Study) -> list[tuple[RuleKey, RoutingRule]]:
    """The active rules of the study's reading group, in order: read from the
    database when the group's ``rules_version`` (read with the study) differs from
    what this process holds."""
    group = study.facility.reading_group
    held = _RULES_READ.get(group.pk)
    if held is not None and held[0] == group.rules_version:
        return held[1]
    keyed = rule_keys_for_group(reading_group_id=group.pk)
    _RULES_READ[group.pk] = (group.rules_version, keyed)
    return keyed


def rule_for_study(*, study: Study) -> RoutingRule | None:
    """The first active rule of the facility's reading group that matches the study."""
    keyed = group_rules(study=study)
    match = first_match([k for k, _ in keyed], _study_key(study))
    if match is None:
        return None
    return next((r for k, r in keyed if k.rule_id == match.rule_id), None)


def study_routing(*, study: Study) -> StudyRouting | None:
    """The study's routing row with its rule: the one joined to the study by the
    caller (``select_related("routing__rule")``), else read (one statement)."""
    if Study.routing.is_cached(study):
        try:
            return study.routing
        except StudyRouting.DoesNotExist:
            return None
    return StudyRouting.objects.filter(study=study).select_related("rule").first()


def study_rule(*, study: Study) -> RoutingRule | None:
    """The routing rule of this study: the one it was routed by, else the one that
    matches it now.  The one answer for the claim re-check, signing, review and
    an admin's "why not this reader"."""
    routing = study_routing(study=study)
    if routing is not None and routing.rule is not None:
        return routing.rule
    return rule_for_study(study=study)


def study_facts(*, study: Study, rule: RoutingRule, now: dt.datetime) -> StudyFacts:
    """What the eligibility policy reads of a study under its rule, at ``now``."""
    return StudyFacts(
        study_id=study.pk,
        facility_id=study.facility_id,
        jurisdiction=study.patient_jurisdiction.code,
        priority=study.priority,
        read_at=now,
        subspecialties=rule.required_subspecialties(),
        allow_general=rule.allow_general,
        # Once a preliminary read is signed, what is left to route is the final read:
        # only readers licensed for final reads in the jurisdiction may take it.
        allow_preliminary=rule.allow_preliminary and study.preliminary_at is None,
        bypass_cap=rule.bypass_cap_for_stat and study.priority == Priority.STAT,
    )


def _tier_pools(facility_ids: list[int]) -> dict[int, dict[int, int]]:
    """The admin's named pools per facility and tier (one query for many facilities)."""
    pools: dict[int, dict[int, int]] = defaultdict(dict)
    for facility_id, tier, pool_id in FacilityTierPool.objects.filter(
        facility_id__in=facility_ids
    ).values_list("facility_id", "tier", "pool_id"):
        pools[facility_id][tier] = pool_id
    return pools


# What every eligibility check reads of a reader ``r`` at a time, as SQL parts with
# the placeholders {now}, {claimed} and {preliminary}: the shift under way (a
# condition on ``network_shift sh``) and the open claims.  One text for routing's
# facts, the one-reader facts and the operations page's reader load
# (turnaround.operations), each filling the placeholders in its parameter style.
SHIFT_UNDER_WAY = "sh.radiologist_id = r.id AND sh.starts_at <= {now} AND sh.ends_at > {now}"
# Open claims are the reader's claimed or preliminary studies and the review cases
# (second opinions, peer reviews) they have claimed and not answered: both fill the
# workload cap.  The review table is named in SQL only (routing imports no later
# stage); 'claimed' is review.models.ReviewStatus.CLAIMED, its one unfinished held
# state (review_assigned_idx serves the count).
OPEN_CLAIMS = (
    "((SELECT COUNT(*) FROM studies_study st WHERE st.assigned_radiologist_id = r.id"
    " AND st.status IN ({claimed}, {preliminary}))"
    " + (SELECT COUNT(*) FROM review_reviewcase rc WHERE rc.assigned_radiologist_id = r.id"
    " AND rc.status = 'claimed'))"
)

# Accepting cases: not paused, or paused by a pause that has run out (its end is on
# the row, so the pause is over at that instant whatever the sweep that clears it,
# network.pauses_end, has done yet).
READER_AVAILABLE = "(r.is_available OR (r.paused_until IS NOT NULL AND r.paused_until <= {now}))"

# Active, available, on shift, open claims, cap, with positional parameters from
# ``reader_state_params``.
READER_STATE_COLUMNS = f"""
    r.is_active, {READER_AVAILABLE} AS is_available,
    EXISTS (SELECT 1 FROM network_shift sh WHERE {SHIFT_UNDER_WAY}) AS on_shift,
    {OPEN_CLAIMS} AS open_claims,
    r.workload_cap""".format(now="%s", claimed="%s", preliminary="%s")  # noqa: S608 - placeholders


def reader_state_named_params(at: dt.datetime) -> dict[str, Any]:
    """The named parameters of SHIFT_UNDER_WAY and OPEN_CLAIMS filled with
    ``%(now)s``, ``%(claimed)s`` and ``%(preliminary)s``."""
    return {
        "now": connection.ops.adapt_datetimefield_value(at),
        "claimed": StudyStatus.CLAIMED.value,
        "preliminary": StudyStatus.PRELIMINARY.value,
    }


def reader_state_params(at: dt.datetime) -> list[Any]:
    now = connection.ops.adapt_datetimefield_value(at)
    return [now, now, now, StudyStatus.CLAIMED.value, StudyStatus.PRELIMINARY.value]


def credential_from_row(
    key: str,
    valid_from: Any,
    valid_to: Any,
    until: Any,
    zone_name: str,
    status: str,
    scope: str,
    *,
    is_license: bool,
) -> Credential:
    """A license or privilege row read by hand-written SQL (SQLite gives dates and
    times as text), with the time zone its dates are judged in (the jurisdiction's,
    the facility's), as a credential valid between two instants."""
    ops = connection.ops
    convert_date = getattr(ops, "convert_datefield_value", None)
    if convert_date is not None:
        valid_from = convert_date(valid_from, None, connection)
        valid_to = convert_date(valid_to, None, connection)
    convert_time = getattr(ops, "convert_timefield_value", None)
    if convert_time is not None and until is not None:
        until = convert_time(until, None, connection)
    starts_at, ends_at = validity_window(valid_from, valid_to, until, zone_name)
    return Credential(
        key=key,
        starts_at=starts_at,
        ends_at=ends_at,
        active=status == CredentialStatus.ACTIVE,
        final_scope=is_license and scope == License.Scope.FINAL,
    )


def _plausible_pairs(
    wanted: list[tuple[int, int, int, str]], *, at: dt.datetime
) -> list[tuple[int, str, int]]:
    """(facility id, jurisdiction code, reader id) for every reader of the
    facility's group who is on shift at ``at`` and holds some license in the
    jurisdiction and some privilege at the facility (valid or not: the decision
    says which).  ``wanted`` is (facility id, group id, jurisdiction id, code).
    One statement for the whole batch: the pairs come in as one array per column
    on PostgreSQL, a VALUES list elsewhere."""
    now = connection.ops.adapt_datetimefield_value(at)
    batch, batch_params = literal_rows(
        ("bigint", "bigint", "bigint", "text"),
        wanted,
    )
    on_shift = """
        on_shift AS MATERIALIZED (
            SELECT DISTINCT sh.radiologist_id AS id FROM network_shift sh
            WHERE sh.ends_at > %s AND sh.starts_at <= %s
        )"""
    if connection.vendor == "postgresql":
        # Per pair (LATERAL): the facility's privileges (its index), kept if the
        # reader is on shift, then one probe each of the reader and license indexes.
        # Left to itself the planner hashes the whole license table instead, at
        # twice the time for a batch of 32 studies.
        sql = f"""
            WITH b(facility_id, group_id, jurisdiction_id, code) AS ({batch}), {on_shift}
            SELECT b.facility_id, b.code, x.id
            FROM b CROSS JOIN LATERAL (
                SELECT DISTINCT r.id FROM network_facilityprivilege p
                JOIN network_radiologist r
                    ON r.id = p.radiologist_id AND r.reading_group_id = b.group_id
                WHERE p.facility_id = b.facility_id
                    AND p.radiologist_id IN (SELECT id FROM on_shift)
                    AND EXISTS (SELECT 1 FROM network_license l
                                WHERE l.jurisdiction_id = b.jurisdiction_id
                                    AND l.radiologist_id = p.radiologist_id)
            ) x
        """  # noqa: S608 - only placeholders are interpolated
    else:
        # Driven from who is on shift now and the facilities' privileges, the
        # smallest sets; the license is then one probe of its index.
        sql = f"""
            WITH b(facility_id, group_id, jurisdiction_id, code) AS ({batch}), {on_shift}
            SELECT DISTINCT b.facility_id, b.code, r.id
            FROM b
            JOIN network_facilityprivilege p ON p.facility_id = b.facility_id
            JOIN on_shift os ON os.id = p.radiologist_id
            JOIN network_radiologist r
                ON r.id = p.radiologist_id AND r.reading_group_id = b.group_id
            WHERE EXISTS (SELECT 1 FROM network_license l
                          WHERE l.jurisdiction_id = b.jurisdiction_id AND l.radiologist_id = r.id)
        """  # noqa: S608 - only placeholders are interpolated
    params: list[Any] = [*batch_params, now, now]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(int(f), str(c), int(r)) for f, c, r in cursor.fetchall()]


class _Readers:
    """What the decision needs about a set of readers, whatever the studies: their
    shift, load, region and pools (two queries), and their licenses, privileges
    and subspecialties (one query of three parts), read as plain rows."""

    def __init__(
        self,
        *,
        reader_ids: list[int],
        at: dt.datetime,
        judged: list[tuple[int, str, int]],
        jurisdiction_ids: dict[str, int],
        pool_ids: list[int],
    ) -> None:
        self.rows: dict[int, tuple[Any, ...]] = {}
        self.licenses: dict[tuple[int, str], list[Credential]] = defaultdict(list)
        self.privileges: dict[tuple[int, int], list[Credential]] = defaultdict(list)
        self.subspecialties: dict[int, set[str]] = defaultdict(set)
        self.pools: dict[int, set[int]] = defaultdict(set)
        self._pool_sets: dict[int, frozenset[int]] = {}
        self._subspecialty_sets: dict[int, frozenset[str]] = {}
        if not reader_ids:
            return
        ops = connection.ops
        readers, reader_params = in_ids("r.id", reader_ids)
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT r.id, r.display_name, r.home_region_id, rg.country,
                    {READER_STATE_COLUMNS},
                    COALESCE((SELECT SUM(sr.relative_value) FROM studies_study st
                              JOIN routing_studyrouting sr ON sr.study_id = st.id
                              WHERE st.assigned_radiologist_id = r.id
                                AND st.claimed_at >= %s), 0) AS recent_work
                FROM network_radiologist r
                JOIN network_region rg ON rg.id = r.home_region_id
                WHERE {readers}
                """,  # noqa: S608 - only placeholders are interpolated
                [
                    *reader_state_params(at),
                    ops.adapt_datetimefield_value(at - RECENT_WORK_WINDOW),
                    *reader_params,
                ],
            )
            self.rows = {row[0]: row for row in cursor.fetchall()}
            # Only the credentials that will be judged: each (facility, jurisdiction,
            # reader) needs that license and that privilege.
            lpairs, p1 = literal_rows(
                ("bigint", "bigint"),
                sorted({(r, jurisdiction_ids[c]) for _, c, r in judged if c in jurisdiction_ids}),
            )
            ppairs, p2 = literal_rows(("bigint", "bigint"), sorted({(f, r) for f, _, r in judged}))
            subspecialty_readers, p3 = in_ids("rs.radiologist_id", reader_ids)
            if connection.vendor == "postgresql":
                # LATERAL, fenced with OFFSET 0 so it is not flattened: one index
                # probe per pair; left to itself the planner, which cannot estimate
                # the pairs, hashes the whole table.
                licenses = (
                    "CROSS JOIN LATERAL (SELECT * FROM network_license x"
                    " WHERE x.jurisdiction_id = lp.jurisdiction_id"
                    " AND x.radiologist_id = lp.radiologist_id"
                    " OFFSET 0) l"
                )
                privileges = (
                    "CROSS JOIN LATERAL (SELECT * FROM network_facilityprivilege x"
                    " WHERE x.facility_id = pp.facility_id"
                    " AND x.radiologist_id = pp.radiologist_id OFFSET 0) p"
                )
            else:
                licenses = (
                    "JOIN network_license l"
                    " ON l.jurisdiction_id = lp.jurisdiction_id"
                    " AND l.radiologist_id = lp.radiologist_id"
                )
                privileges = (
                    "JOIN network_facilityprivilege p"
                    " ON p.facility_id = pp.facility_id AND p.radiologist_id = pp.radiologist_id"
                )
            cursor.execute(
                f"""
                WITH lp(radiologist_id, jurisdiction_id) AS ({lpairs}),
                pp(facility_id, radiologist_id) AS ({ppairs})
                SELECT 'l', lp.radiologist_id, CAST(lp.jurisdiction_id AS VARCHAR(20)),
                    l.valid_from, l.valid_to, l.valid_until_time, j.timezone, l.status, l.scope
                FROM lp {licenses}
                JOIN network_jurisdiction j ON j.id = lp.jurisdiction_id
                UNION ALL
                SELECT 'p', pp.radiologist_id, CAST(pp.facility_id AS VARCHAR(20)),
                    p.valid_from, p.valid_to, p.valid_until_time, f.timezone, p.status, ''
                FROM pp {privileges}
                JOIN network_facility f ON f.id = pp.facility_id
                UNION ALL
                SELECT 's', rs.radiologist_id, s.code, NULL, NULL, NULL, '', '', ''
                FROM network_radiologist_subspecialties rs
                JOIN network_subspecialty s ON s.id = rs.subspecialty_id
                WHERE {subspecialty_readers}
                """,  # noqa: S608 - only placeholders are interpolated
                [*p1, *p2, *p3],
            )
            credentials = cursor.fetchall()
        code_of = {pk: code for code, pk in jurisdiction_ids.items()}
        for kind, reader_id, key, valid_from, valid_to, until, zone, status, scope in credentials:
            if kind == "s":
                self.subspecialties[reader_id].add(str(key))
                continue
            if kind == "l":
                key = code_of[int(key)]  # licenses are judged by jurisdiction code
            credential = credential_from_row(
                str(key),
                valid_from,
                valid_to,
                until,
                zone,
                status,
                scope,
                is_license=kind == "l",
            )
            if kind == "l":
                self.licenses[reader_id, key].append(credential)
            else:
                self.privileges[reader_id, int(key)].append(credential)
        if pool_ids:
            for pool_id, reader_id in ReaderPool.radiologists.through.objects.filter(
                readerpool_id__in=pool_ids, radiologist_id__in=reader_ids
            ).values_list("readerpool_id", "radiologist_id"):
                self.pools[reader_id].add(pool_id)

    @staticmethod
    def _frozen(
        cache: dict[int, frozenset[Any]], sets: dict[int, set[Any]], pk: int
    ) -> frozenset[Any]:
        """A reader's set, frozen once for all the studies of the batch."""
        found = cache.get(pk)
        if found is None:
            found = cache[pk] = frozenset(sets.get(pk, ()))
        return found

    def facts(
        self,
        reader_ids: list[int],
        *,
        facility: Facility,
        facility_country: str,
        pools: dict[int, int],
        jurisdiction_code: str,
    ) -> list[CandidateFacts]:
        facts = []
        for pk in sorted(reader_ids):
            row = self.rows.get(pk)
            if row is None:
                continue
            _, name, region_id, country, active, available, shift, claims, cap, work = row
            facts.append(
                CandidateFacts(
                    radiologist_id=pk,
                    name=name,
                    tier=tier_of(
                        home_region_id=region_id,
                        home_country=country,
                        facility_region_id=facility.region_id,
                        facility_country=facility_country,
                        local_pool=pools.get(0),
                        regional_pool=pools.get(1),
                        pools=self._frozen(self._pool_sets, self.pools, pk),
                    ),
                    active=bool(active),
                    available=bool(available),
                    on_shift=bool(shift),
                    subspecialties=self._frozen(self._subspecialty_sets, self.subspecialties, pk),
                    licenses=tuple(self.licenses[pk, jurisdiction_code]),
                    privileges=tuple(self.privileges[pk, facility.pk]),
                    open_claims=int(claims),
                    workload_cap=cap,
                    recent_work=float(work),
                )
            )
        return facts


def reader_facts(
    *, study: Study, radiologist_id: int, rule_id: int | None, at: dt.datetime
) -> tuple[CandidateFacts, frozenset[str]] | None:
    """The facts of one reader for one study (the one-reader mode of
    ``candidate_facts``), and the codes of the subspecialties the rule requires, in
    two statements; None if the reader does not read for the study's facility's
    group.

    The same facts as ``candidate_facts`` for one named reader (shift, open
    claims, cap, licenses in the jurisdiction, privileges at the facility,
    subspecialties), without what only ranks the eligible: the tier and the recent
    work are left at 0, so a verdict's eligibility and reasons are the batch's, its
    tier and load are not.  tests/worklist pins the equivalence.
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
            SELECT 'l', l.valid_from, l.valid_to, l.valid_until_time, j.timezone,
                l.status, l.scope
            FROM network_license l
            JOIN network_jurisdiction j ON j.id = l.jurisdiction_id
            WHERE l.radiologist_id = %s AND l.jurisdiction_id = %s
            UNION ALL
            SELECT 'p', p.valid_from, p.valid_to, p.valid_until_time, f.timezone, p.status, ''
            FROM network_facilityprivilege p
            JOIN network_facility f ON f.id = p.facility_id
            WHERE p.radiologist_id = %s AND p.facility_id = %s
            UNION ALL
            SELECT 's', NULL, NULL, NULL, '', s.code, ''
            FROM network_radiologist_subspecialties rs
            JOIN network_subspecialty s ON s.id = rs.subspecialty_id
            WHERE rs.radiologist_id = %s
            UNION ALL
            SELECT 'r', NULL, NULL, NULL, '', s.code, ''
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
    for kind, valid_from, valid_to, until, zone, status, scope in rows:
        if kind == "s":
            subspecialties.add(str(status))
        elif kind == "r":
            required.add(str(status))
        else:
            key = study.patient_jurisdiction.code if kind == "l" else str(study.facility_id)
            credential = credential_from_row(
                key, valid_from, valid_to, until, zone, status, scope, is_license=kind == "l"
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


def candidate_facts(
    *,
    facility: Facility,
    jurisdiction_code: str,
    max_tier: int,
    at: dt.datetime,
    radiologist_ids: list[int] | None = None,
) -> list[CandidateFacts]:
    """Facts about the facility's group's readers within ``max_tier`` who are on shift
    at ``at`` (or about the named readers, on shift or not)."""
    return candidate_facts_many(
        [(facility, jurisdiction_code)], max_tier=max_tier, at=at, radiologist_ids=radiologist_ids
    )[facility.pk, jurisdiction_code]


def candidate_facts_many(
    wanted: list[tuple[Facility, str]],
    *,
    max_tier: int,
    at: dt.datetime,
    radiologist_ids: list[int] | None = None,
    jurisdiction_ids: dict[str, int] | None = None,
    readers_by_pair: dict[tuple[int, str], set[int]] | None = None,
) -> dict[tuple[int, str], list[CandidateFacts]]:
    """``candidate_facts`` for several (facility, jurisdiction code) pairs at once, as
    for a batch of studies being routed: the same few set-based queries whatever
    the number of pairs and readers (the named pools; the plausible readers of
    every pair; those readers' shift, load and region; their credentials; their
    pool memberships if pools are named).  Only plausible candidates are read:
    anyone else is explained on demand (``why_not`` names the readers).  Callers
    that know the jurisdictions' ids (from the studies) pass them
    (``jurisdiction_ids``, by code) to save reading them.  ``radiologist_ids``
    names the readers to judge for every pair; ``readers_by_pair`` names them per
    (facility id, code) pair, so that only those credentials are read."""
    distinct = {(f.pk, code): f for f, code in wanted}
    if not distinct:
        return {}
    facility_ids = sorted({pk for pk, _ in distinct})
    pools = _tier_pools(facility_ids)
    readers_of: dict[tuple[int, str], list[int]] = defaultdict(list)
    codes = {code for _, code in distinct}
    if jurisdiction_ids is not None and codes <= jurisdiction_ids.keys():
        jurisdictions = {code: jurisdiction_ids[code] for code in codes}
    else:
        jurisdictions = dict(Jurisdiction.objects.filter(code__in=codes).values_list("code", "pk"))
    if radiologist_ids is not None or readers_by_pair is not None:
        group_of = {pk: f.reading_group_id for (pk, _), f in distinct.items()}
        wanted_ids = (
            set(radiologist_ids)
            if radiologist_ids is not None
            else {r for found in (readers_by_pair or {}).values() for r in found}
        )
        named = dict(
            Radiologist.objects.filter(pk__in=wanted_ids).values_list("pk", "reading_group_id")
        )
        for key in distinct:
            asked = readers_by_pair.get(key, set()) if readers_by_pair is not None else named
            readers_of[key] = [r for r, g in named.items() if g == group_of[key[0]] and r in asked]
    else:
        batch = [
            (pk, f.reading_group_id, jurisdictions[code], code)
            for (pk, code), f in distinct.items()
            if code in jurisdictions
        ]
        for facility_id, code, reader_id in _plausible_pairs(batch, at=at):
            readers_of[facility_id, code].append(reader_id)
    readers = _Readers(
        reader_ids=sorted({r for found in readers_of.values() for r in found}),
        at=at,
        judged=[(pk, code, r) for (pk, code), found in readers_of.items() for r in found],
        jurisdiction_ids=jurisdictions,
        pool_ids=sorted({p for by_tier in pools.values() for p in by_tier.values()}),
    )
    out: dict[tuple[int, str], list[CandidateFacts]] = {}
    for (pk, code), facility in distinct.items():
        facts = readers.facts(
            readers_of[pk, code],
            facility=facility,
            facility_country=facility.region.country,
            pools=pools.get(pk, {}),
            jurisdiction_code=code,
        )
        out[pk, code] = [c for c in facts if c.tier <= max_tier]
    return out


def why_not(*, study: Study, radiologist_id: int, now: dt.datetime | None = None) -> Verdict | None:
    """The routing verdict for any reader of the group on this study, computed on
    demand (an admin's "why not this reader?"); None for a reader of another group."""
    now = now or timezone.now()
    rule = study_rule(study=study)
    if rule is None:
        return None
    facts = study_facts(study=study, rule=rule, now=now)
    candidates = candidate_facts(
        facility=study.facility,
        jurisdiction_code=facts.jurisdiction,
        max_tier=LAST_TIER,
        at=now,
        radiologist_ids=[radiologist_id],
    )
    return ROUTE.judge(facts, candidates[0]) if candidates else None


def studies_awaiting_route() -> QuerySet[Study, int]:
    """Ready studies never routed, most urgent first (the live-queue partial index):
    a routing task takes a batch of them besides its own study."""
    return (
        Study.objects.filter(status=StudyStatus.READY, routing__isnull=True)
        .order_by("priority", "sla_due_at", "id")
        .values_list("pk", flat=True)
    )


def escalations_due(*, now: dt.datetime) -> QuerySet[StudyRouting, int]:
    """Studies whose routing timer is due, oldest first (partial index on the timer)."""
    return (
        StudyRouting.objects.filter(next_escalation_at__lte=now)
        .order_by("next_escalation_at")
        .values_list("study_id", flat=True)
    )


def studies_unrouted(*, ready_before: dt.datetime, now: dt.datetime) -> QuerySet[Study, int]:
    """Ready studies with no routing decision at all: their task was lost, or they
    were held (for their order or their priors) and the hold has passed ``now``."""
    never_held = Q(order_hold_until__isnull=True, priors_hold_until__isnull=True)
    hold_over = (Q(order_hold_until__isnull=True) | Q(order_hold_until__lte=now)) & (
        Q(priors_hold_until__isnull=True) | Q(priors_hold_until__lte=now)
    )
    due = (never_held & Q(ready_at__lte=ready_before)) | (~never_held & hold_over)
    return (
        Study.objects.filter(due, status=StudyStatus.READY, routing__isnull=True)
        .order_by("ready_at")
        .values_list("pk", flat=True)
    )


def offers_no_longer_eligible(
    *, now: dt.datetime, radiologist_ids: list[int] | None = None
) -> list[tuple[int, int]]:
    """(offer id, study id) of open offers, on worklists or held by a claim, that the
    KEEP_OFFER policy no longer keeps: the reader is inactive, off shift, or no longer
    holds the license (with the scope the study's rule needs, judged as the router
    judges it) or the privileges.  Every open offer (the sweep), or only these
    readers' (an eligibility change).  The facts are gathered as for routing, in one
    batch for all the offers: a constant number of statements."""
    rows = list(open_offers_of_live_studies(radiologist_ids=radiologist_ids))
    if not rows:
        return []
    studies = {
        st.pk: st
        for st in Study.objects.filter(pk__in={study_id for _, study_id, _ in rows}).select_related(
            "facility__region", "facility__reading_group", "patient_jurisdiction", "routing__rule"
        )
    }
    # Only the (facility, jurisdiction, reader) triples some open offer needs.
    readers_by_pair: dict[tuple[int, str], set[int]] = defaultdict(set)
    for _, study_id, reader_id in rows:
        study = studies[study_id]
        readers_by_pair[study.facility_id, study.patient_jurisdiction.code].add(reader_id)
    facts = candidate_facts_many(
        [(st.facility, st.patient_jurisdiction.code) for st in studies.values()],
        max_tier=LAST_TIER,
        at=now,
        readers_by_pair=readers_by_pair,
        jurisdiction_ids={
            st.patient_jurisdiction.code: st.patient_jurisdiction_id for st in studies.values()
        },
    )
    readers = {key: {c.radiologist_id: c for c in candidates} for key, candidates in facts.items()}
    rules = {st.pk: study_rule(study=st) for st in studies.values()}
    _rules_subspecialties_read([r for r in rules.values() if r is not None])
    lapsed = []
    study_facts_of: dict[int, StudyFacts | None] = {}
    for offer_id, study_id, reader_id in rows:
        study = studies[study_id]
        if study_id not in study_facts_of:
            rule = rules[study_id]
            study_facts_of[study_id] = (
                study_facts(study=study, rule=rule, now=now) if rule is not None else None
            )
        wanted = study_facts_of[study_id]
        if wanted is None:
            continue  # no rule to judge by: the escalation makes it unroutable
        candidate = readers[study.facility_id, wanted.jurisdiction].get(reader_id)
        if candidate is None or not KEEP_OFFER.judge(wanted, candidate).eligible:
            lapsed.append((offer_id, study_id))
    return lapsed


def _rules_subspecialties_read(rules: list[RoutingRule]) -> None:
    """Read the required subspecialties of these rule objects in one statement (each
    would otherwise read its own when its study's facts are built)."""
    unknown = [r for r in rules if r._required_codes is None]
    if not unknown:
        return
    codes: dict[int, set[str]] = defaultdict(set)
    for rule_id, code in RoutingRule.subspecialties.through.objects.filter(
        routingrule_id__in={r.pk for r in unknown}
    ).values_list("routingrule_id", "subspecialty__code"):
        codes[rule_id].add(code)
    for rule in unknown:
        rule.required_subspecialties_known(frozenset(codes[rule.pk]))


def decisions_for_study(*, study: Study) -> QuerySet[RoutingDecision]:
    return RoutingDecision.objects.filter(study=study).order_by("created_at", "id")


def shift_coverage(
    *, facility: Facility, jurisdiction_code: str, at: dt.datetime
) -> dict[str, int]:
    """How many of the group's active readers are on shift, and of those how many
    hold a license valid at ``at`` in the jurisdiction, and privileges at the facility
    too (for unroutable explanations).  Two statements: the readers on shift, and
    their credentials there (validity judged in the jurisdiction's and facility's
    time zones, as routing judges it)."""
    on_shift = list(
        Radiologist.objects.filter(
            Exists(
                Shift.objects.filter(radiologist=OuterRef("pk"), starts_at__lte=at, ends_at__gt=at)
            ),
            reading_group_id=facility.reading_group_id,
            is_active=True,
        ).values_list("pk", flat=True)
    )
    if not on_shift:
        return {"on_shift": 0, "licensed": 0, "privileged": 0}
    # A civil date anywhere is within a day of the UTC date: rows outside that band
    # cannot be valid at ``at``; those inside are judged in their own time zone.
    near = Q(
        valid_from__lte=at.date() + dt.timedelta(days=1),
        valid_to__gte=at.date() - dt.timedelta(days=1),
    )
    rows = (
        License.objects.filter(
            near,
            radiologist_id__in=on_shift,
            jurisdiction__code=jurisdiction_code,
            status=CredentialStatus.ACTIVE,
        )
        .order_by()
        .values_list(
            Value("l"),
            "radiologist_id",
            "valid_from",
            "valid_to",
            "valid_until_time",
            "jurisdiction__timezone",
        )
        .union(
            FacilityPrivilege.objects.filter(
                near,
                radiologist_id__in=on_shift,
                facility=facility,
                status=CredentialStatus.ACTIVE,
            )
            .order_by()
            .values_list(
                Value("p"),
                "radiologist_id",
                "valid_from",
                "valid_to",
                "valid_until_time",
                "facility__timezone",
            ),
            all=True,
        )
    )
    valid: dict[str, set[int]] = {"l": set(), "p": set()}
    for kind, reader_id, valid_from, valid_to, until, zone_name in rows:
        starts_at, ends_at = validity_window(valid_from, valid_to, until, zone_name)
        if starts_at <= at < ends_at:
            valid[kind].add(reader_id)
    return {
        "on_shift": len(on_shift),
        "licensed": len(valid["l"]),
        "privileged": len(valid["l"] & valid["p"]),
    }
