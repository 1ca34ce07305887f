"""The encounter record is evidence: no clinical row is ever deleted, signed notes never change, and
revisions, amendments, participant snapshots and modality changes are only ever added (EHR-5, EHR-6).

Reuses records_refuse_change() from 0002. The triggers apply to every role, the table owner included.
"""

from django.db import migrations

APPEND_ONLY = [
    "records_encounterparticipant",
    "records_encountermodalitychange",
    "records_noterevision",
    "records_noteamendment",
]
NEVER_DELETED = ["records_encounter", "records_clinicalnote", "records_practitionerkey", "records_signingauthority"]

# Every column of a signed note but updated_at: once OLD.status is 'signed' none of them may change.
SIGNED_NOTE_COLUMNS = [
    "encounter_id",
    "patient_id",
    "author_id",
    "template_id",
    "status",
    "content",
    "version",
    "created_at",
    "signed_at",
    "signed_by_id",
    "content_sha256",
    "signature",
    "signature_algorithm",
    "certificate_pem",
]


def _row(prefix: str) -> str:
    return "(" + ", ".join(f"{prefix}.{column}" for column in SIGNED_NOTE_COLUMNS) + ")"


SQL = [
    f"""
CREATE FUNCTION records_refuse_signed_note_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'signed' AND {_row("NEW")} IS DISTINCT FROM {_row("OLD")} THEN
        RAISE EXCEPTION 'A signed clinical note is never changed (note %): add an amendment instead.', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER records_clinicalnote_refuse_signed_change BEFORE UPDATE ON records_clinicalnote
    FOR EACH ROW EXECUTE FUNCTION records_refuse_signed_note_change();
"""
]
REVERSE = [
    """
DROP TRIGGER records_clinicalnote_refuse_signed_change ON records_clinicalnote;
DROP FUNCTION records_refuse_signed_note_change();
"""
]
for table in APPEND_ONLY + NEVER_DELETED:
    events = "UPDATE OR DELETE" if table in APPEND_ONLY else "DELETE"
    SQL.append(
        f"CREATE TRIGGER {table}_refuse_change BEFORE {events} ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION records_refuse_change();\n"
        f"CREATE TRIGGER {table}_refuse_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION records_refuse_change();"
    )
    REVERSE.insert(
        0, f"DROP TRIGGER {table}_refuse_truncate ON {table};\nDROP TRIGGER {table}_refuse_change ON {table};"
    )


class Migration(migrations.Migration):
    dependencies = [("records", "0008_encounters_and_notes")]

    operations = [migrations.RunSQL(sql="\n".join(SQL), reverse_sql="\n".join(REVERSE))]
