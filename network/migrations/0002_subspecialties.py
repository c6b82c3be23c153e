from django.db import migrations

SUBSPECIALTIES = [
    ("neuro", "Neuroradiology"),
    ("msk", "Musculoskeletal"),
    ("body", "Body / abdominal"),
    ("chest", "Chest / thoracic"),
    ("breast", "Breast"),
    ("pediatric", "Pediatric"),
    ("cardiac", "Cardiac"),
    ("nuclear", "Nuclear medicine / PET"),
    ("interventional", "Interventional"),
    ("emergency", "Emergency"),
    ("general", "General radiology"),
]


def forward(apps, schema_editor):
    Subspecialty = apps.get_model("network", "Subspecialty")
    for code, name in SUBSPECIALTIES:
        Subspecialty.objects.update_or_create(code=code, defaults={"name": name})


class Migration(migrations.Migration):
    dependencies = [("network", "0001_initial")]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
