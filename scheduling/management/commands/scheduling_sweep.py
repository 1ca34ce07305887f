"""`manage.py scheduling_sweep [--every SECONDS]`: scheduling's periodic upkeep (the worker runs it every minute).

Queues again the notifications whose delivery is overdue (their queue entry was lost) and expires lapsed holds;
then sends `scheduling.signals.periodic_upkeep` for the upkeep of apps above scheduling (video).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections, connection

from scheduling.notifications import notifications_sweep
from scheduling.services import holds_release_expired
from scheduling.signals import periodic_upkeep

logger = logging.getLogger("scheduling.sweep")


class Command(BaseCommand):
    help = "Queue overdue notifications again and expire lapsed holds (once, or every N seconds)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="Keep running, sweeping every SECONDS (at least 1), until SIGTERM or SIGINT.",
        )

    def handle(self, *args: Any, every: float | None, **options: Any) -> None:
        if every is None:
            queued, expired = notifications_sweep(), holds_release_expired()
            _upkeep()
            self.stdout.write(f"Queued {queued} overdue notifications; expired {expired} lapsed holds.")
            return
        if every < 1:
            raise CommandError("--every must be at least 1 second.")
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.is_set():
            started = time.monotonic()
            try:
                notifications_sweep()
                holds_release_expired()
                _upkeep()
            except DatabaseError:
                # The database may be restarting: try again next tick on a fresh connection. Pending
                # notifications stay in the outbox and lapsed holds are ignored by slot search meanwhile.
                logger.exception("Scheduling sweep failed; retrying in %s seconds.", every)
                connection.close()
            close_old_connections()
            stop.wait(max(0.0, every - (time.monotonic() - started)))


def _upkeep() -> None:
    # One receiver failing must not stop the others nor this sweep: each error is logged and the next tick
    # tries again.
    for receiver, result in periodic_upkeep.send_robust(sender=Command):
        if isinstance(result, Exception):
            logger.error(
                "Periodic upkeep %s failed: %s", getattr(receiver, "__qualname__", receiver), type(result).__name__
            )
