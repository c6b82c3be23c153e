from typing import Any

from django.core.management.base import BaseCommand

from reporting.services.templates import report_templates_seed


class Command(BaseCommand):
    help = "Load the starter library of structured report templates (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        created = report_templates_seed()
        self.stdout.write(self.style.SUCCESS(f"Starter templates loaded: {created} new."))
