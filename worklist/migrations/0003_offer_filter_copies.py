"""Offers carry the study's facility and the rule that made them, so the worklist's
facility and subspecialty filters read the offer row, not the study's."""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
UPDATE worklist_offer SET
    facility_id = (SELECT s.facility_id FROM studies_study s
                   WHERE s.id = worklist_offer.study_id),
    rule_id = (SELECT r.rule_id FROM routing_studyrouting r
               WHERE r.study_id = worklist_offer.study_id)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("worklist", "0002_offer_worklist_keys"),
        ("network", "0001_initial"),
        ("routing", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="offer",
            name="facility",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="network.facility",
            ),
        ),
        migrations.AddField(
            model_name="offer",
            name="rule",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="routing.routingrule",
            ),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="offer",
            name="facility",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="network.facility",
            ),
        ),
        migrations.AddIndex(
            model_name="offer",
            index=models.Index(
                condition=models.Q(("held_at__isnull", True), ("withdrawn_at__isnull", True)),
                fields=["radiologist", "facility", "priority", "sla_due_at", "received_at", "study"],
                name="offer_worklist_facility_idx",
            ),
        ),
    ]
