"""Issue an API token from the server's shell: ``manage.py api_token <username>``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import api_token_issue


class Command(BaseCommand):
    help = (
        "Issue an expiring API token for a user and print it (alone, for scripts). "
        "An operator's command on the server: it asks no second factor; the issue is audited."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {options['username']!r}.")
        _, key = api_token_issue(user=user, actor=None, ip_address=None, via="manage.py")
        self.stdout.write(key)
