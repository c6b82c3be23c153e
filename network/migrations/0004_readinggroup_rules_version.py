from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("network", "0003_facility_dicom_allowed_networks"),
    ]

    operations = [
        migrations.AddField(
            model_name="readinggroup",
            name="rules_version",
            field=models.BigIntegerField(default=0, editable=False),
        ),
    ]
