"""Model-level permissions of each role, kept as Django groups.

Object-level reach (which facilities, which reading group) comes from
guardian grants; these groups only open the Django admin's screens.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission

GROUP_ADMINS = "Group admins"

_GROUP_ADMIN_PERMS = [
    *(
        f"network.{verb}_{model}"
        for model in (
            "facility",
            "facilityaetitle",
            "radiologist",
            "license",
            "facilityprivilege",
            "shift",
            "rota",
            "leave",
        )
        for verb in ("add", "change", "delete", "view")
    ),
    "network.view_readinggroup",
    "network.view_jurisdiction",
    "network.view_region",
    "network.view_subspecialty",
    "studies.view_study",
    "ingest.view_quarantinedobject",
    "ingest.change_quarantinedobject",
    "alerts.view_alert",
    "alerts.change_alert",
    # Why a study went where it went: read-only, scoped to the group's studies in
    # routing/admin.py.
    "routing.view_routingdecision",
    # Reporting: templates added (never changed), reports and their delivery read-only,
    # and the facilities' result endpoints; each screen is scoped in reporting/admin.py.
    "reporting.add_reporttemplate",
    "reporting.view_reporttemplate",
    *(
        f"reporting.view_{model}"
        for model in (
            "report",
            "reportversion",
            "addendum",
            "criticalcommunication",
            "reportmessage",
            "deliveryattempt",
        )
    ),
    *(f"reporting.{verb}_facilityendpoint" for verb in ("add", "change", "delete", "view")),
]


def ensure_role_groups(**kwargs: Any) -> None:
    """Create or refresh the role groups; idempotent, runs after every migrate."""
    group, _ = Group.objects.get_or_create(name=GROUP_ADMINS)
    wanted = []
    for dotted in _GROUP_ADMIN_PERMS:
        app_label, codename = dotted.split(".")
        perm = Permission.objects.filter(
            content_type__app_label=app_label, codename=codename
        ).first()
        if perm is not None:
            wanted.append(perm)
    group.permissions.set(wanted)
