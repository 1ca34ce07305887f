"""Remove identity from blocked records whose retention has ended (never anything inside retention)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from records.retention import purge_candidates, purge_expired


class Command(BaseCommand):
    help = "Anonymise blocked patient records whose retention period has ended and that have no legal hold."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="List what would be purged, change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dry_run"]:
            ids = [p.pk for p in purge_candidates()]
            self.stdout.write(f"{len(ids)} record(s) eligible: {', '.join(f'#{i}' for i in ids) or '-'}")
            return
        try:
            purged = purge_expired()
        except Exception as exc:  # pragma: no cover - reported, never half-applied (one transaction)
            raise CommandError(f"Purge failed and changed nothing: {type(exc).__name__}") from None
        self.stdout.write(f"{len(purged)} record(s) anonymised.")
