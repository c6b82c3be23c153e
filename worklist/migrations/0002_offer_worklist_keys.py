"""Offers carry the worklist's sort keys, and only offered studies have offers on a
worklist (open and not held).

Existing open offers of claimed studies are held by the claim (back on the
worklists on release); those of other studies that are no longer offered are
withdrawn.
"""

from django.db import migrations, models

BACKFILL = """
UPDATE worklist_offer SET
    priority = (SELECT s.priority FROM studies_study s WHERE s.id = worklist_offer.study_id),
    sla_due_at = (SELECT s.sla_due_at FROM studies_study s WHERE s.id = worklist_offer.study_id),
    received_at = (SELECT s.received_at FROM studies_study s WHERE s.id = worklist_offer.study_id)
"""

HOLD_CLAIMED = """
UPDATE worklist_offer SET held_at = CURRENT_TIMESTAMP
WHERE withdrawn_at IS NULL
  AND study_id IN (SELECT id FROM studies_study WHERE status IN ('claimed', 'preliminary'))
"""

CLOSE_OTHERS = """
UPDATE worklist_offer SET withdrawn_at = CURRENT_TIMESTAMP,
    withdrawn_reason = 'study no longer offered'
WHERE withdrawn_at IS NULL
  AND study_id IN (SELECT id FROM studies_study
                   WHERE status NOT IN ('offered', 'claimed', 'preliminary'))
"""


class Migration(migrations.Migration):
    dependencies = [
        ("worklist", "0001_initial"),
        ("studies", "0004_study_study_open_claims_idx_and_more"),
    ]

    operations = [
        migrations.AddField(
            model_name="offer",
            name="priority",
            field=models.PositiveSmallIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="offer",
            name="sla_due_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="offer",
            name="received_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name="offer",
            name="held_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.RunSQL(HOLD_CLAIMED, migrations.RunSQL.noop),
        migrations.RunSQL(CLOSE_OTHERS, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="offer",
            name="priority",
            field=models.PositiveSmallIntegerField(),
        ),
        migrations.AlterField(
            model_name="offer",
            name="sla_due_at",
            field=models.DateTimeField(),
        ),
        migrations.AlterField(
            model_name="offer",
            name="received_at",
            field=models.DateTimeField(),
        ),
        migrations.RemoveIndex(
            model_name="offer",
            name="offer_open_by_reader_idx",
        ),
        migrations.AddIndex(
            model_name="offer",
            index=models.Index(
                condition=models.Q(("held_at__isnull", True), ("withdrawn_at__isnull", True)),
                fields=["radiologist", "priority", "sla_due_at", "received_at", "study"],
                name="offer_worklist_idx",
            ),
        ),
    ]
