"""The reference: one hand-written SQL query per study that returns its eligible
readers, ranked as the app ranks them.

Same hard filters as ``routing.eligibility.judge`` (active, available, on shift,
license in the patient's jurisdiction valid today with final scope - or any scope
when the rule allows preliminary reads -, active privilege at the facility valid
today, a required subspecialty - or "general" when the rule allows it -, under the
workload cap unless a STAT bypass applies) and the same ranking (tier, fit, final
before preliminary, load, id).  The tier is geographic (the benchmark defines no
named pools): 0 = the facility's region, 1 = its country, 2 = anywhere.  The
nearest tier with anyone eligible is what the app offers, so the caller keeps the
rows of the first tier returned.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

ELIGIBLE_SQL = """
WITH cand AS MATERIALIZED (
    -- Readers licensed in the jurisdiction (index on jurisdiction), in the group,
    -- active and available, privileged at the facility, on shift now.
    SELECT r.id, r.home_region_id, r.workload_cap,
           bool_or(l.scope = 'final') AS final_scope,
           EXISTS (SELECT 1 FROM network_radiologist_subspecialties rs
                   WHERE rs.radiologist_id = r.id
                     AND rs.subspecialty_id = ANY(%(wanted)s)) AS wanted_sub
    FROM network_license l
    JOIN network_radiologist r ON r.id = l.radiologist_id
    WHERE l.jurisdiction_id = %(jurisdiction_id)s AND l.status = 'active'
      AND l.valid_from <= %(today)s AND l.valid_to >= %(today)s
      AND (l.scope = 'final' OR %(allow_preliminary)s)
      AND r.reading_group_id = %(group_id)s AND r.is_active AND r.is_available
      AND EXISTS (SELECT 1 FROM network_facilityprivilege p
                  WHERE p.facility_id = %(facility_id)s AND p.radiologist_id = r.id
                    AND p.status = 'active'
                    AND p.valid_from <= %(today)s AND p.valid_to >= %(today)s)
      AND EXISTS (SELECT 1 FROM network_shift sh
                  WHERE sh.radiologist_id = r.id
                    AND sh.starts_at <= %(now)s AND sh.ends_at > %(now)s)
    GROUP BY r.id
)
SELECT c.id,
       CASE WHEN c.home_region_id = %(region_id)s THEN 0
            WHEN hr.country = %(country)s THEN 1 ELSE 2 END AS tier,
       CASE WHEN c.wanted_sub THEN 2 ELSE 1 END AS fit,
       c.final_scope,
       COALESCE(oc.n, 0)::float8 / GREATEST(c.workload_cap, 1)
         + COALESCE(rw.total, 0)::float8 AS load
FROM cand c
JOIN network_region hr ON hr.id = c.home_region_id
LEFT JOIN LATERAL (
    SELECT count(*) AS n FROM studies_study x
    WHERE x.assigned_radiologist_id = c.id AND x.status IN ('claimed', 'preliminary')
) oc ON true
LEFT JOIN LATERAL (
    SELECT sum(sr.relative_value) AS total
    FROM studies_study x JOIN routing_studyrouting sr ON sr.study_id = x.id
    WHERE x.assigned_radiologist_id = c.id AND x.claimed_at >= %(recent_since)s
) rw ON true
WHERE (c.wanted_sub
       OR (%(allow_general)s AND EXISTS (
               SELECT 1 FROM network_radiologist_subspecialties rs
               WHERE rs.radiologist_id = c.id AND rs.subspecialty_id = %(general_id)s)))
  AND (%(bypass_cap)s OR COALESCE(oc.n, 0) < c.workload_cap)
ORDER BY tier, fit DESC, c.final_scope DESC, load, c.id
"""

RECENT_WORK_WINDOW = dt.timedelta(hours=8)  # as routing.selectors.RECENT_WORK_WINDOW


class RawRouter:
    """Rule matching in Python (the app's pure ``first_match``) + the query above."""

    def __init__(self, conn: Any) -> None:
        from network.models import Subspecialty
        from routing.models import RoutingRule
        from routing.rules import RuleKey

        self.conn = conn
        self.general_id = Subspecialty.objects.get(code="general").pk
        self.rules: dict[int, RoutingRule] = {}
        self.wanted: dict[int, list[int]] = {}
        keys = []
        rules = RoutingRule.objects.filter(is_active=True).prefetch_related(
            "facilities", "subspecialties"
        )
        for r in rules:
            self.rules[r.pk] = r
            self.wanted[r.pk] = [s.pk for s in r.subspecialties.all()]
            keys.append(
                (
                    r.reading_group_id,
                    RuleKey(
                        rule_id=r.pk,
                        is_default=r.is_default,
                        facility_ids=frozenset(f.pk for f in r.facilities.all()),
                        modalities=frozenset(str(m).upper() for m in r.modalities),
                        body_parts=frozenset(str(b).upper() for b in r.body_parts),
                        description_pattern=r.description_pattern,
                        procedure_code_pattern=r.procedure_code_pattern,
                        priorities=frozenset(int(p) for p in r.priorities),
                        flags=frozenset(str(f) for f in r.flags),
                    ),
                )
            )
        keys.sort(
            key=lambda gk: (
                self.rules[gk[1].rule_id].is_default,
                self.rules[gk[1].rule_id].position,
                gk[1].rule_id,
            )
        )
        self.keys_by_group: dict[int, list[Any]] = {}
        for group, key in keys:
            self.keys_by_group.setdefault(group, []).append(key)

    @staticmethod
    def load_studies(conn: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
        """What rule matching needs (read once, before timing)."""
        rows = conn.execute(
            "SELECT s.id, s.facility_id, s.modality, s.body_part, s.study_description, "
            "s.procedure_code, s.priority, s.flags, f.reading_group_id, "
            "s.patient_jurisdiction_id, f.region_id, fr.country "
            "FROM studies_study s JOIN network_facility f ON f.id = s.facility_id "
            "JOIN network_region fr ON fr.id = f.region_id "
            "WHERE s.id = ANY(%s)",
            (ids,),
        ).fetchall()
        return {
            r[0]: {
                "facility_id": r[1],
                "modality": r[2],
                "body_part": r[3],
                "description": r[4],
                "procedure_code": r[5],
                "priority": r[6],
                "flags": r[7] or [],
                "group": r[8],
                "jurisdiction_id": r[9],
                "region_id": r[10],
                "country": r[11],
            }
            for r in rows
        }

    def eligible(
        self, study_id: int, study: dict[str, Any], now: dt.datetime
    ) -> tuple[int | None, list[int]]:
        """(rule id, eligible reader ids at the nearest tier, best first)."""
        from routing.rules import StudyKey, first_match

        now = now.astimezone(dt.UTC)  # the app's read date is the UTC date
        key = StudyKey(
            facility_id=study["facility_id"],
            modality=study["modality"],
            body_part=study["body_part"],
            description=study["description"],
            procedure_code=study["procedure_code"],
            priority=study["priority"],
            flags=frozenset(str(f) for f in study["flags"]),
        )
        match = first_match(self.keys_by_group.get(study["group"], []), key)
        if match is None:
            return None, []
        rule = self.rules[match.rule_id]
        rows = self.conn.execute(
            ELIGIBLE_SQL,
            {
                "facility_id": study["facility_id"],
                "jurisdiction_id": study["jurisdiction_id"],
                "region_id": study["region_id"],
                "country": study["country"],
                "group_id": study["group"],
                "wanted": self.wanted[rule.pk],
                "general_id": self.general_id,
                "now": now,
                "today": now.date(),
                "recent_since": now - RECENT_WORK_WINDOW,
                "allow_preliminary": rule.allow_preliminary,
                "allow_general": rule.allow_general,
                "bypass_cap": bool(rule.bypass_cap_for_stat and study["priority"] == 1),
            },
            prepare=True,
        ).fetchall()
        if not rows:
            return rule.pk, []
        first_tier = rows[0][1]
        ids = [r[0] for r in rows if r[1] == first_tier]
        if rule.delivery == "auto_assign":
            ids = ids[:1]
        return rule.pk, ids
