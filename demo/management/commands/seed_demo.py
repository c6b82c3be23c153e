from typing import Any

from django.core.management.base import BaseCommand

from demo.seed import DEMO_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Create the demo reading network, users and studies (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = seed_demo()
        summary = ", ".join(f"{v} {k}" for k, v in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Demo network ready: {summary}."))
        self.stdout.write(
            "Demo logins (password for all: "
            f"{DEMO_PASSWORD}): admin (group admin), dr.chen (radiologist), "
            "staff.stmary (facility staff), superuser."
        )
