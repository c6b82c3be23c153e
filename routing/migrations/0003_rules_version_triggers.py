"""Triggers that give every reading group a new ``rules_version`` whenever routing
rules change, by any path (the ORM, bulk updates, the admin, plain SQL), so that
routing processes can keep rules in memory and never use stale ones.

The value is random rather than a counter: a counter could repeat for a reading
group id that a rolled-back transaction or a restored database reuses."""

from django.db import migrations

TABLES = [
    "routing_routingrule",
    "routing_routingrule_facilities",
    "routing_routingrule_subspecialties",
    "network_subspecialty",
]

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION routing_rules_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE network_readinggroup
    SET rules_version = floor(random() * 9000000000000000000)::bigint;
    RETURN NULL;
END $$
"""


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FUNCTION)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_rules_changed AFTER INSERT OR UPDATE OR DELETE "
                f"OR TRUNCATE ON {table} FOR EACH STATEMENT "
                "EXECUTE FUNCTION routing_rules_changed()"
            )
    elif vendor == "sqlite":
        for table in TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                schema_editor.execute(
                    f"CREATE TRIGGER {table}_rules_changed_{event.lower()} AFTER {event} "
                    f"ON {table} BEGIN UPDATE network_readinggroup "
                    "SET rules_version = random(); END"
                )
    else:  # pragma: no cover - other databases are not supported
        raise RuntimeError(f"no rules-version triggers for {vendor}")


def drop(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_rules_changed ON {table}")
        else:
            for event in ("insert", "update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_rules_changed_{event}")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS routing_rules_changed()")


class Migration(migrations.Migration):
    dependencies = [
        ("network", "0004_readinggroup_rules_version"),
        ("routing", "0002_studyrouting_routing_unroutable_idx"),
    ]

    operations = [migrations.RunPython(create, drop)]
