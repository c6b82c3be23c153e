"""A rule set as plain data: the representation drafts store and the replay reads.

A rule is a dict with the fields of the routing-rules API
(``routing.api.RoutingRuleSerializer``) but ``reading_group`` and the timestamps:
``facilities`` as ids, ``subspecialties`` as codes, ``relative_value`` as a
decimal string.  ``id`` is the live rule it stands for (None: a rule the draft
adds).  The live rules are read into the same form, so the live arm and a draft
arm of a replay go through the same code.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from network.models import Priority
from routing.models import RoutingRule
from routing.rules import RuleKey
from simulation.engine import SimRule

RULE_FIELDS = (
    "id",
    "name",
    "position",
    "is_active",
    "is_default",
    "facilities",
    "modalities",
    "body_parts",
    "description_pattern",
    "procedure_code_pattern",
    "priorities",
    "flags",
    "subspecialties",
    "allow_general",
    "allow_preliminary",
    "bypass_cap_for_stat",
    "relative_value",
    "delivery",
    "accept_timeout_seconds",
    "next_case_only",
    "escalate_fractions",
    "widest_tier",
    "min_tier_wait_seconds",
    "wait_stat_seconds",
    "wait_urgent_seconds",
    "wait_routine_seconds",
)
# The fields a draft rule's dict maps onto the model directly (all but the id and
# the two many-to-many lists).
SCALAR_FIELDS = tuple(f for f in RULE_FIELDS if f not in ("id", "facilities", "subspecialties"))


def rule_as_dict(
    rule: RoutingRule, *, facilities: list[int], subspecialties: list[str]
) -> dict[str, Any]:
    """A live rule in the draft representation (its related ids and codes read by
    the caller, in bulk)."""
    out: dict[str, Any] = {"id": rule.pk}
    for name in SCALAR_FIELDS:
        value = getattr(rule, name)
        if name == "relative_value":
            value = f"{Decimal(value):.2f}"
        elif name == "escalate_fractions":
            value = [float(x) for x in value]
        out[name] = value
    out["facilities"] = sorted(facilities)
    out["subspecialties"] = sorted(subspecialties)
    return out


def sim_rule(rule: dict[str, Any], *, key_id: int) -> SimRule:
    """A rule in the representation as the replay reads it; ``key_id`` names it in
    the match keys (the live id, or a made-up negative one for a draft's new rule)."""
    return SimRule(
        key=RuleKey(
            rule_id=key_id,
            is_default=bool(rule["is_default"]),
            facility_ids=frozenset(int(f) for f in rule["facilities"]),
            modalities=frozenset(str(m).upper() for m in rule["modalities"]),
            body_parts=frozenset(str(b).upper() for b in rule["body_parts"]),
            description_pattern=rule["description_pattern"],
            procedure_code_pattern=rule["procedure_code_pattern"],
            priorities=frozenset(int(p) for p in rule["priorities"]),
            flags=frozenset(str(f) for f in rule["flags"]),
        ),
        name=rule["name"],
        subspecialties=frozenset(rule["subspecialties"]),
        allow_general=bool(rule["allow_general"]),
        allow_preliminary=bool(rule["allow_preliminary"]),
        bypass_cap_for_stat=bool(rule["bypass_cap_for_stat"]),
        relative_value=float(rule["relative_value"]),
        auto_assign=rule["delivery"] == RoutingRule.Delivery.AUTO_ASSIGN,
        accept_timeout=dt.timedelta(seconds=int(rule["accept_timeout_seconds"])),
        # Only the widenings up to the widest tier the rule allows (as live:
        # RoutingRule.widening_fractions).
        escalate_fractions=tuple(
            float(x) for x in rule["escalate_fractions"][: int(rule["widest_tier"])]
        ),
        widest_tier=int(rule["widest_tier"]),
        min_tier_wait=dt.timedelta(seconds=int(rule["min_tier_wait_seconds"])),
        tier_waits={
            Priority.STAT: dt.timedelta(seconds=int(rule["wait_stat_seconds"])),
            Priority.URGENT: dt.timedelta(seconds=int(rule["wait_urgent_seconds"])),
            Priority.ROUTINE: dt.timedelta(seconds=int(rule["wait_routine_seconds"])),
        },
    )


def sim_rules(rules: list[dict[str, Any]]) -> list[SimRule]:
    """The active rules of a set, in the order live routing tries them (defaults
    last, then position, then id; a new rule after the live ones)."""
    active = [r for r in rules if r["is_active"]]
    ordered = sorted(
        enumerate(active),
        key=lambda ir: (
            bool(ir[1]["is_default"]),
            int(ir[1]["position"]),
            ir[1]["id"] if ir[1]["id"] is not None else 10**12 + ir[0],
        ),
    )
    return [sim_rule(r, key_id=r["id"] if r["id"] is not None else -(i + 1)) for i, r in ordered]
