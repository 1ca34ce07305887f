"""Recordings are clinical evidence: their rows are never deleted (status changes are updates, allowed)."""

from django.db import migrations

SQL = """
CREATE FUNCTION video_recording_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'Recordings are never deleted: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER video_recording_refuse_delete BEFORE DELETE ON video_recording
    FOR EACH ROW EXECUTE FUNCTION video_recording_refuse_delete();
CREATE TRIGGER video_recording_refuse_truncate BEFORE TRUNCATE ON video_recording
    FOR EACH STATEMENT EXECUTE FUNCTION video_recording_refuse_delete();
"""

REVERSE = """
DROP TRIGGER video_recording_refuse_truncate ON video_recording;
DROP TRIGGER video_recording_refuse_delete ON video_recording;
DROP FUNCTION video_recording_refuse_delete();
"""


class Migration(migrations.Migration):
    dependencies = [("video", "0002_recordings")]

    operations = [migrations.RunSQL(sql=SQL, reverse_sql=REVERSE)]
