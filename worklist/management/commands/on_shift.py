"""Who is on shift now, and what is on each one's worklist."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from network.models import Radiologist
from network.selectors import reader_presence, shift_list_on_duty
from worklist.selectors import worklist_for_reader


class Command(BaseCommand):
    help = (
        "List the radiologists on shift now (username, shift end, availability) and the "
        "studies offered to each: whom to sign in as to see a study on a worklist."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--group", help="only this reading group (its name)")
        parser.add_argument(
            "--limit", type=int, default=10, help="studies listed per reader (default 10)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        readers = (
            Radiologist.objects.filter(
                pk__in=shift_list_on_duty(at=now).values("radiologist"), is_active=True
            )
            .select_related("user", "reading_group")
            .order_by("reading_group__name", "user__username")
        )
        if options["group"]:
            readers = readers.filter(reading_group__name=options["group"])
        self.stdout.write(f"On shift at {now:%Y-%m-%d %H:%M} UTC:")
        found = False
        for reader in readers:
            found = True
            presence = reader_presence(radiologist=reader, at=now)
            ends = presence.shift_ends_at
            state = "available" if presence.is_available else "UNAVAILABLE (paused)"
            if presence.paused_until is not None:
                state += f" until {presence.paused_until:%H:%M} UTC"
            self.stdout.write(
                f"\n{reader.user.username:<16} {reader.display_name} "
                f"({reader.reading_group.name}); shift ends "
                f"{ends:%H:%M} UTC; {state}"
                if ends
                else f"\n{reader.user.username}"
            )
            offered = list(worklist_for_reader(radiologist=reader)[: options["limit"]])
            if not offered:
                self.stdout.write("    nothing offered")
            for study in offered:
                self.stdout.write(
                    f"    study {study.pk:<6} {study.get_priority_display():<8} "
                    f"{study.accession_number or '-':<12} {study.modality} {study.body_part} "
                    f"- {study.facility.name}"
                )
        if not found:
            self.stdout.write("nobody")
