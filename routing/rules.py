"""Which routing rule applies to a study: pure matching over plain data."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class StudyKey:
    """What rules match on."""

    facility_id: int
    modality: str
    body_part: str
    description: str
    procedure_code: str
    priority: int
    flags: frozenset[str]


@dataclass(frozen=True)
class RuleKey:
    rule_id: int
    is_default: bool
    facility_ids: frozenset[int]
    modalities: frozenset[str]
    body_parts: frozenset[str]
    description_pattern: str
    procedure_code_pattern: str
    priorities: frozenset[int]
    flags: frozenset[str]


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def rule_matches(rule: RuleKey, study: StudyKey) -> bool:
    """True when every criterion the rule sets holds for the study (empty = any)."""
    if rule.is_default:
        return True
    if rule.facility_ids and study.facility_id not in rule.facility_ids:
        return False
    if rule.modalities and study.modality.upper() not in rule.modalities:
        return False
    if rule.body_parts and study.body_part.upper() not in rule.body_parts:
        return False
    if rule.priorities and study.priority not in rule.priorities:
        return False
    if not rule.flags <= study.flags:
        return False
    if rule.description_pattern and not _compiled(rule.description_pattern).search(
        study.description
    ):
        return False
    return not (
        rule.procedure_code_pattern
        and not _compiled(rule.procedure_code_pattern).search(study.procedure_code)
    )


def first_match(rules: Sequence[RuleKey], study: StudyKey) -> RuleKey | None:
    """The first matching rule in order; default rules are tried last."""
    ordered = [r for r in rules if not r.is_default] + [r for r in rules if r.is_default]
    return next((r for r in ordered if rule_matches(r, study)), None)
