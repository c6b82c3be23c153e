"""One version of every existing reader's facts, recorded when this runs: the start
of their history (network.history).  With the migration's own (historical) models,
in the format network.history reads."""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.utils import timezone


def backfill(apps: Any, schema_editor: Any) -> None:
    from network.history import Tables, versions_record

    tables = Tables(
        radiologist=apps.get_model("network", "Radiologist"),
        license=apps.get_model("network", "License"),
        privilege=apps.get_model("network", "FacilityPrivilege"),
        shift=apps.get_model("network", "Shift"),
        version=apps.get_model("network", "ReaderVersion"),
    )
    ids = tables.radiologist._default_manager.values_list("pk", flat=True)
    versions_record(tables, radiologist_ids=list(ids), at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("network", "0009_reader_versions"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
