"""Delete sign-in counters whose window and lockout are both over (run it from a daily timer or worker)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts import throttle


class Command(BaseCommand):
    help = "Delete sign-in throttle counters that can no longer affect anything."

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = throttle.prune()
        self.stdout.write(f"Deleted {deleted} finished sign-in counters.")
