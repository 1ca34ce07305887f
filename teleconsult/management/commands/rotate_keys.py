"""Rotate encryption keys online: a new data key, re-encryption in batches, retirement of unused keys."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from teleconsult import keyrotation
from teleconsult.models import DataKey, DataKeyStatus


class Command(BaseCommand):
    help = (
        "Introduce a new data key and re-encrypt every encrypted value under it, in resumable batches. "
        "With --resume, continue an interrupted rotation without a new key. With --rewrap, re-wrap the "
        "data keys under the current key-encryption key (after TELECONSULT_KEK changed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--resume", action="store_true", help="Continue re-encrypting; no new key.")
        parser.add_argument("--rewrap", action="store_true", help="Only re-wrap data keys under the current KEK.")
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="Skip waiting for other processes to pick up the new key (only when no other process runs).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1 or options["batch_size"] > 10_000:
            self.stderr.write("--batch-size must be between 1 and 10000.")
            sys.exit(2)
        if options["rewrap"]:
            count = keyrotation.rewrap_data_keys()
            self.stdout.write(f"Re-wrapped {count} data key(s) under the current key-encryption key.")
            return
        if options["resume"]:
            key = keyrotation.active_key()
            self.stdout.write(f"Resuming: re-encrypting under data key #{key.pk}.")
        else:
            key = keyrotation.introduce_new_key()
            self.stdout.write(f"Data key #{key.pk} is now active; earlier keys are retiring.")
            if not options["no_wait"]:
                keyrotation.wait_for_processes_to_follow()
        columns = keyrotation.encrypted_columns()
        total = sum(keyrotation.count_not_under(column, key.pk) for column in columns)
        done = 0

        def progress(step: int) -> None:
            nonlocal done
            done += step
            width = 30
            filled = width * done // total if total else width
            self.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} values", ending="")
            self.stdout.flush()

        for column in columns:
            keyrotation.reencrypt_column(column, batch_size=options["batch_size"], progress=progress)
        self.stdout.write("")
        retired, still_used = keyrotation.retire_unused_keys()
        for key_id in retired:
            self.stdout.write(f"Data key #{key_id} retired (nothing uses it).")
        for key_id, uses in still_used.items():
            self.stdout.write(f"Data key #{key_id} still protects {uses} value(s); run with --resume later.")
        active = DataKey.objects.filter(status=DataKeyStatus.ACTIVE).count()
        self.stdout.write(self.style.SUCCESS(f"Done: {done} value(s) re-encrypted; {active} active key."))
