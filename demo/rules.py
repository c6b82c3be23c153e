"""Demo routing rules: subspecialty rules per reading group and a default rule."""

from __future__ import annotations

from typing import Any

from network.models import ReadingGroup, Subspecialty
from routing.models import RoutingRule

DEMO_RULES: list[dict[str, Any]] = [
    {
        "name": "Neuro: head and brain CT/MR",
        "position": 10,
        "modalities": ["CT", "MR"],
        "body_parts": ["HEAD", "BRAIN"],
        "subspecialties": ["neuro"],
        "allow_general": True,
        "relative_value": "1.50",
        "bypass_cap_for_stat": True,
        "allow_preliminary": True,
    },
    {
        "name": "MSK: joints and spine MR",
        "position": 20,
        "modalities": ["MR"],
        "body_parts": ["KNEE", "SHOULDER", "HIP", "SPINE", "ANKLE"],
        "subspecialties": ["msk"],
        "allow_general": True,
        "relative_value": "1.30",
    },
    {
        "name": "Breast imaging",
        "position": 30,
        "modalities": ["MG"],
        "subspecialties": ["breast"],
        "relative_value": "0.80",
    },
    {
        "name": "Chest radiographs and CT",
        "position": 40,
        "modalities": ["CR", "DX", "CT"],
        "body_parts": ["CHEST"],
        "subspecialties": ["chest", "emergency"],
        "allow_general": True,
        "relative_value": "0.60",
        # High-volume work taken in order: readers get it through "Next case" only.
        "next_case_only": True,
    },
    {
        "name": "Body: abdomen and pelvis",
        "position": 50,
        "body_parts": ["ABDOMEN", "PELVIS"],
        "subspecialties": ["body"],
        "allow_general": True,
        "relative_value": "1.20",
        "allow_preliminary": True,
    },
    {
        "name": "Everything else",
        "position": 1000,
        "is_default": True,
        "subspecialties": ["general", "emergency"],
        "allow_general": True,
        "relative_value": "1.00",
        "allow_preliminary": True,
    },
]


def seed_demo_rules(group: ReadingGroup) -> None:
    """Create the demo rules for a group unless it has rules already (idempotent)."""
    if RoutingRule.objects.filter(reading_group=group).exists():
        return
    codes = {s.code: s for s in Subspecialty.objects.all()}
    for spec in DEMO_RULES:
        spec = dict(spec)
        subspecialties = spec.pop("subspecialties")
        rule = RoutingRule.objects.create(
            reading_group=group,
            wait_stat_seconds=120,
            wait_urgent_seconds=300,
            wait_routine_seconds=900,
            **spec,
        )
        rule.subspecialties.set([codes[c] for c in subspecialties])
