"""Online rotation of encryption keys: new data key, batch re-encryption, retirement, KEK re-wrap."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.apps import apps
from django.db import connection, models, transaction
from django.utils import timezone

from teleconsult import crypto
from teleconsult.fields import EncryptedTextField
from teleconsult.models import DataKey, DataKeyStatus


@dataclass(frozen=True)
class EncryptedColumn:
    model: type[models.Model]
    field: EncryptedTextField

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field.name}"

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def column(self) -> str:
        return _column(self.field)


def encrypted_columns() -> list[EncryptedColumn]:
    found = []
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                found.append(EncryptedColumn(model, field))
    return found


def _column(field: models.Field) -> str:
    # Only fields without a column of their own (relations seen from the other side) have None here;
    # every field this module touches is a concrete one.
    if field.column is None:
        raise ValueError(f"{field} has no database column.")
    return field.column


def _key_bytes(key_id: int) -> bytes:
    return key_id.to_bytes(4, "big")


def _qn(name: str) -> str:
    return connection.ops.quote_name(name)


def count_not_under(column: EncryptedColumn, key_id: int) -> int:
    """Values of a column written under any data key other than `key_id` (read from the header bytes)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {_qn(column.table)} WHERE {_qn(column.column)} IS NOT NULL "  # noqa: S608
            f"AND substring({_qn(column.column)} from 2 for 4) <> %s",
            [_key_bytes(key_id)],
        )
        return cursor.fetchone()[0]


def count_under(column: EncryptedColumn, key_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM {_qn(column.table)} "  # noqa: S608 - identifiers quoted, value bound
            f"WHERE substring({_qn(column.column)} from 2 for 4) = %s",
            [_key_bytes(key_id)],
        )
        return cursor.fetchone()[0]


@transaction.atomic
def introduce_new_key() -> DataKey:
    """Make a fresh data key active; the previously active one becomes retiring (still decrypts)."""
    # Lock the active row so two rotations cannot both demote it and race on creating the new key.
    DataKey.objects.select_for_update().filter(status=DataKeyStatus.ACTIVE).update(status=DataKeyStatus.RETIRING)
    kek_id, wrapped = crypto.keyring().keks.wrap(crypto.AESGCM.generate_key(bit_length=256))
    key = DataKey.objects.create(kek_id=kek_id, wrapped_key=wrapped, status=DataKeyStatus.ACTIVE)
    crypto.keyring().reset()
    return key


def active_key() -> DataKey:
    crypto.keyring().reset()
    key_id = crypto.keyring().active_key_id()
    return DataKey.objects.get(pk=key_id)


def _batches(column: EncryptedColumn, key_id: int, batch_size: int) -> Iterator[list[int]]:
    last_pk: int | None = None
    pk_column = _column(column.model._meta.pk)
    while True:
        clause = f"AND {_qn(pk_column)} > %s " if last_pk is not None else ""
        params: list[bytes | int] = [_key_bytes(key_id)]
        if last_pk is not None:
            params.append(last_pk)
        params.append(batch_size)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {_qn(pk_column)} FROM {_qn(column.table)} "  # noqa: S608
                f"WHERE {_qn(column.column)} IS NOT NULL AND substring({_qn(column.column)} from 2 for 4) <> %s "
                f"{clause}ORDER BY {_qn(pk_column)} LIMIT %s",
                params,
            )
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return
        yield ids
        last_pk = ids[-1]


def reencrypt_column(
    column: EncryptedColumn,
    *,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-encrypt every value of `column` not under the active key. Each batch is its own transaction,
    so an interruption loses nothing and a re-run continues where this one stopped."""
    key_id = crypto.keyring().active_key_id()
    done = 0
    manager = column.model._base_manager
    for ids in _batches(column, key_id, batch_size):
        with transaction.atomic():
            # Declares this transaction a re-encryption: the append-only and signed-record triggers then let
            # an UPDATE through when only encrypted columns change (records/migrations/0011).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL teleconsult.rekey = 'on'")
            # Rows being edited right now are skipped (SKIP LOCKED) rather than overwritten with a stale
            # value; they are written under the active key by that edit, or picked up by a later pass.
            rows = list(manager.select_for_update(skip_locked=True).filter(pk__in=ids).only("pk", column.field.name))
            for row in rows:
                # Assigning the decrypted text back makes the field encrypt it under the active key.
                setattr(row, column.field.attname, getattr(row, column.field.attname))
            manager.bulk_update(rows, [column.field.name])
        done += len(rows)
        if progress:
            progress(len(rows))
    return done


def retire_unused_keys() -> tuple[list[int], dict[int, int]]:
    """Retire each retiring key nothing uses any more; return (retired ids, {still-used id: count})."""
    retired, still_used = [], {}
    columns = encrypted_columns()
    for key in DataKey.objects.filter(status=DataKeyStatus.RETIRING).order_by("pk"):
        uses = sum(count_under(column, key.pk) for column in columns)
        if uses:
            still_used[key.pk] = uses
            continue
        DataKey.objects.filter(pk=key.pk, status=DataKeyStatus.RETIRING).update(
            status=DataKeyStatus.RETIRED, retired_at=timezone.now()
        )
        retired.append(key.pk)
    crypto.keyring().reset()
    return retired, still_used


@transaction.atomic
def rewrap_data_keys() -> int:
    """Re-wrap every non-retired data key under the current KEK (after TELECONSULT_KEK changed)."""
    keks = crypto.keyring().keks
    current = keks.current_id()
    count = 0
    for key in DataKey.objects.select_for_update().exclude(kek_id=current).exclude(status=DataKeyStatus.RETIRED):
        plain = keks.unwrap(key.kek_id, bytes(key.wrapped_key))
        key.kek_id, key.wrapped_key = keks.wrap(plain)
        key.save(update_fields=["kek_id", "wrapped_key"])
        count += 1
    crypto.keyring().reset()
    return count


def wait_for_processes_to_follow() -> None:
    """Other processes re-read the active key every ACTIVE_KEY_TTL seconds; wait that long before the
    final pass so nothing keeps writing under the retiring key behind the rotation's back."""
    time.sleep(crypto.ACTIVE_KEY_TTL)
