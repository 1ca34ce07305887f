"""`manage.py notifications_sweep [--every SECONDS]`: queue overdue pending notifications again (the worker runs it)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections, connection

from scheduling.notifications import notifications_sweep

logger = logging.getLogger("scheduling.notifications")


class Command(BaseCommand):
    help = "Queue again the pending notifications whose delivery is overdue (once, or every N seconds)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="Keep running, sweeping every SECONDS (at least 1), until SIGTERM or SIGINT.",
        )

    def handle(self, *args: Any, every: float | None, **options: Any) -> None:
        if every is None:
            self.stdout.write(f"Queued {notifications_sweep()} overdue notifications.")
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
            except DatabaseError:
                # The database may be restarting: try again next tick on a fresh connection. Pending rows
                # stay in the outbox meanwhile; nothing is lost.
                logger.exception("Notification sweep failed; retrying in %s seconds.", every)
                connection.close()
            close_old_connections()
            stop.wait(max(0.0, every - (time.monotonic() - started)))
