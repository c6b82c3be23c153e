"""Which routing rule applies to a study: pure matching over plain data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type hints


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


# Rules' patterns are written by group admins and run against every arriving study,
# so they are matched with RE2: linear time in the text whatever the pattern, so
# "(a+)+$" cannot backtrack for hours.  RE2 has no backreferences or lookaround;
# such patterns are refused when a rule is saved (pattern_problem).
MAX_PATTERN_LENGTH = 300  # the model's column


def _options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a refused pattern is reported to the caller, not stderr
    options.max_mem = 1 << 20  # a pattern whose automaton needs more is refused
    return options


def pattern_problem(pattern: str) -> str | None:
    """Why the pattern cannot be a rule's (too long, or not RE2 syntax), or None."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"At most {MAX_PATTERN_LENGTH} characters."
    try:
        re2.compile(pattern, options=_options())
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        return (
            f"Not a regular expression this engine accepts ({reason}); "
            "backreferences and lookaround are not supported."
        )
    return None


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> Any:
    # A pattern saved before validation existed (or by hand) that RE2 refuses
    # matches nothing rather than failing the routing of every study.
    if pattern_problem(pattern) is not None:
        return None
    return re2.compile(pattern, options=_options())


def _search(pattern: str, text: str) -> bool:
    compiled = _compiled(pattern)
    return compiled is not None and compiled.search(text) is not None


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
    if rule.description_pattern and not _search(rule.description_pattern, study.description):
        return False
    return not (
        rule.procedure_code_pattern
        and not _search(rule.procedure_code_pattern, study.procedure_code)
    )


def first_match(rules: Sequence[RuleKey], study: StudyKey) -> RuleKey | None:
    """The first matching rule in order; default rules are tried last."""
    ordered = [r for r in rules if not r.is_default] + [r for r in rules if r.is_default]
    return next((r for r in ordered if rule_matches(r, study)), None)
