"""`manage.py audit_seal [--every SECONDS]`: seal pending audit events once, or in a loop (the worker runs it)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections, connection

from audit.sealing import seal_pending

logger = logging.getLogger("audit.sealing")


class Command(BaseCommand):
    help = "Seal the audit events whose transactions have ended (once, or every N seconds until stopped)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=float,
            metavar="SECONDS",
            help="Keep running, sealing every SECONDS (at least 1), until SIGTERM or SIGINT.",
        )

    def handle(self, *args: Any, every: float | None, **options: Any) -> None:
        if every is None:
            sealed = seal_pending()
            self.stdout.write(f"Sealed {sealed.events} events in {sealed.seals} seals.")
            return
        if every < 1:
            raise CommandError("--every must be at least 1 second.")
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.is_set():
            started = time.monotonic()
            try:
                seal_pending()
            except DatabaseError:
                # The database may be restarting or failing over: keep the loop alive, try again next
                # tick on a fresh connection. Events are safe meanwhile; they only wait longer for a seal.
                logger.exception("Audit sealing failed; retrying in %s seconds.", every)
                connection.close()
            close_old_connections()
            stop.wait(max(0.0, every - (time.monotonic() - started)))
