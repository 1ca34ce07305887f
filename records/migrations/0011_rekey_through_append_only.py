"""Key rotation may re-encrypt append-only and signed rows, and nothing else may change them.

`manage.py rotate_keys` re-encrypts every encrypted column under the new data key by UPDATE. The append-only
triggers refused that, so a rotation stopped at the first consent decision or signed note. Now the triggers
let an UPDATE through only when the transaction declared itself a re-encryption
(`SET LOCAL teleconsult.rekey = 'on'`, which only teleconsult.keyrotation does) AND nothing but the table's
encrypted columns differs; every other column, and DELETE and TRUNCATE, stay refused. The plaintext is
unchanged by a re-encryption: signed notes still verify (their signature covers the plaintext).
"""

from django.db import migrations

# The encrypted columns of each append-only table (teleconsult.keyrotation.encrypted_columns()).
REKEYED = {
    "records_consentdecision": ["representative_name", "typed_name", "signature_png", "witness_name"],
    "records_noterevision": ["content"],
    "records_noteamendment": ["reason", "text"],
    "records_prescriptionalertacknowledgement": ["reason"],
}
TRIGGER_NAMES = {
    "records_consentdecision": "records_consentdecision_refuse_change",
    "records_noterevision": "records_noterevision_refuse_change",
    "records_noteamendment": "records_noteamendment_refuse_change",
    "records_prescriptionalertacknowledgement": "records_prescriptionalert_refuse_change",
}

FUNCTIONS = """
CREATE OR REPLACE FUNCTION records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV lists the table's encrypted columns: a declared re-encryption may change those alone.
    IF TG_OP = 'UPDATE' AND TG_NARGS > 0 AND current_setting('teleconsult.rekey', true) = 'on'
       AND (to_jsonb(NEW) - TG_ARGV) = (to_jsonb(OLD) - TG_ARGV) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'Clinical records are never changed or deleted: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE OR REPLACE FUNCTION records_refuse_signed_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'signed' AND (to_jsonb(NEW) - 'updated_at'::text) IS DISTINCT FROM (to_jsonb(OLD) - 'updated_at'::text)
       AND NOT (current_setting('teleconsult.rekey', true) = 'on'
                AND (to_jsonb(NEW) - ARRAY['content', 'updated_at']) = (to_jsonb(OLD) - ARRAY['content', 'updated_at'])) THEN
        RAISE EXCEPTION 'A signed clinical note is never changed (note %): add an amendment instead.', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
"""

PREVIOUS_FUNCTIONS = """
CREATE OR REPLACE FUNCTION records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'Clinical records are never changed or deleted: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def _triggers(with_arguments: bool) -> str:
    statements = []
    for table, columns in REKEYED.items():
        name = TRIGGER_NAMES[table]
        arguments = ", ".join(f"'{column}'" for column in columns) if with_arguments else ""
        statements.append(
            f"DROP TRIGGER {name} ON {table};\n"
            f"CREATE TRIGGER {name} BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION records_refuse_change({arguments});"
        )
    return "\n".join(statements)


class Migration(migrations.Migration):
    dependencies = [("records", "0010_medications")]

    operations = [
        migrations.RunSQL(
            sql=FUNCTIONS + _triggers(with_arguments=True),
            # The signed-note function keeps its re-encryption clause on the way back: harmless without the flag.
            reverse_sql=_triggers(with_arguments=False) + PREVIOUS_FUNCTIONS,
        )
    ]
