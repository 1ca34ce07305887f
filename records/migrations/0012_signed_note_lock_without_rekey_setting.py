"""A signed note's content could be changed in a database session that had never set teleconsult.rekey.

`current_setting('teleconsult.rekey', true)` is NULL in a session that never set the parameter (and '' once a
SET LOCAL of it has ended). 0011's signed-note check was `NOT (flag = 'on' AND only content changed)`: with a
NULL flag and only the content changed, that is NOT NULL, i.e. NULL, and `IF NULL` does not raise, so the
UPDATE went through. The flag is now read as '' when unset, in both functions, so only a declared
re-encryption (`SET LOCAL teleconsult.rekey = 'on'`) gets past either of them.
"""

from django.db import migrations

FUNCTIONS = """
CREATE OR REPLACE FUNCTION records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV lists the table's encrypted columns: a declared re-encryption may change those alone.
    IF TG_OP = 'UPDATE' AND TG_NARGS > 0 AND coalesce(current_setting('teleconsult.rekey', true), '') = 'on'
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
       AND NOT (coalesce(current_setting('teleconsult.rekey', true), '') = 'on'
                AND (to_jsonb(NEW) - ARRAY['content', 'updated_at']) = (to_jsonb(OLD) - ARRAY['content', 'updated_at'])) THEN
        RAISE EXCEPTION 'A signed clinical note is never changed (note %): add an amendment instead.', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("records", "0011_rekey_through_append_only")]

    # No way back: the previous text of the functions is the flaw this migration removes.
    operations = [migrations.RunSQL(sql=FUNCTIONS, reverse_sql=migrations.RunSQL.noop)]
