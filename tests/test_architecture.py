"""The architecture as the code has it: one owner per table, checked statically
over every module (the suite-wide runtime check is ``tests/ownership.py``), and
the architecture document's ownership table generated from the models."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from django.apps import apps

from tests.ownership import OUR_APPS, charge, table_owners

ROOT = Path(__file__).resolve().parent.parent
WRITES = {
    "create",
    "get_or_create",
    "update_or_create",
    "update",
    "delete",
    "bulk_create",
    "bulk_update",
}
RAW_WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+[\"`]?(\w+)", re.IGNORECASE)


def _modules() -> list[tuple[str, Path]]:
    found = []
    for app in sorted(OUR_APPS):
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            found.append((app, path))
    return found


def _model_owners() -> dict[str, str]:
    """Model class name -> owning app label (our apps)."""
    return {
        m.__name__: m._meta.app_label for m in apps.get_models() if m._meta.app_label in OUR_APPS
    }


def _foreign_writes(app: str, path: Path, owners: dict[str, str]) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    imported: dict[str, str] = {}  # local name -> owning app, for other apps' models
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.endswith(".models"):
            source = node.module.split(".")[0]
            if source in OUR_APPS and source != app:
                for alias in node.names:
                    owner = owners.get(alias.name)
                    if owner is not None and owner != app:
                        imported[alias.asname or alias.name] = owner
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr not in WRITES:
                continue
            # Walk the chain down to its root: Model.objects.filter(...).update(...)
            chain: ast.AST = node.func.value
            through_manager = False
            while True:
                if isinstance(chain, ast.Attribute):
                    through_manager |= chain.attr == "objects"
                    chain = chain.value
                elif isinstance(chain, ast.Call):
                    chain = chain.func
                else:
                    break
            if through_manager and isinstance(chain, ast.Name) and chain.id in imported:
                problems.append(
                    f"{path.relative_to(ROOT)}:{node.lineno} {chain.id}.objects…"
                    f".{node.func.attr}() writes a table of {imported[chain.id]}"
                )
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for table in RAW_WRITE.findall(node.value):
                owner = table_owners().get(table.lower())
                if owner is not None and owner != app:
                    problems.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} raw SQL writes {table} "
                        f"(owned by {owner})"
                    )
    return problems


@pytest.mark.django_db
def test_no_app_writes_another_apps_tables_in_its_code():
    owners = _model_owners()
    problems = [p for app, path in _modules() for p in _foreign_writes(app, path, owners)]
    assert problems == []


def _frame_in(module: str):  # type: ignore[no-untyped-def]
    """A frame whose code belongs to ``module`` (as if it ran there)."""
    namespace = {"__name__": module, "sys": sys}
    exec("def here():\n    return sys._getframe()\n", namespace)  # noqa: S102 - fixed code
    return namespace["here"]()


@pytest.mark.django_db
def test_the_runtime_check_charges_the_writing_app_not_the_model_layer():
    insert = 'INSERT INTO "worklist_offer" ("study_id") VALUES (1)'
    violation = charge(insert, _frame_in("routing.services"))
    assert violation is not None
    assert (violation.table, violation.owner, violation.writer) == (
        "worklist_offer",
        "worklist",
        "routing.services",
    )
    assert charge(insert, _frame_in("worklist.services.offers")) is None
    # The model layer says how, not who: charged to the caller, here the test.
    assert charge(insert, _frame_in("worklist.models")) is None
    assert charge('SELECT * FROM "worklist_offer"', _frame_in("routing.services")) is None
    assert charge('UPDATE "auth_user" SET x = 1', _frame_in("routing.services")) is None


def _ownership_table() -> str:
    """The architecture document's table of who owns what, from the models."""
    by_app: dict[str, list[str]] = {}
    for model in apps.get_models():
        label = model._meta.app_label
        if label in OUR_APPS:
            by_app.setdefault(label, []).append(model.__name__)
    lines = ["| app | owns (writes only through its services) |", "| --- | --- |"]
    for app in sorted(by_app):
        lines.append(f"| `{app}` | {', '.join(sorted(by_app[app]))} |")
    return "\n".join(lines)


def test_the_architecture_document_names_every_table_and_its_owner():
    text = (ROOT / "docs" / "architecture.md").read_text()
    begin, end = "<!-- ownership:begin -->", "<!-- ownership:end -->"
    assert begin in text and end in text
    written = text.split(begin, 1)[1].split(end, 1)[0].strip()
    assert written == _ownership_table(), (
        "docs/architecture.md's ownership table differs from the models; it should read:\n"
        + _ownership_table()
    )


def test_the_readme_links_the_architecture():
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()
