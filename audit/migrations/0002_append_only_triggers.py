"""Make the audit tables append-only in PostgreSQL itself, and stamp each event with its transaction id.

Triggers rather than privileges alone: they apply to every role, the table owner and superusers included.
Only switching them off (`SET session_replication_role = replica`, superuser only; `ALTER TABLE ... DISABLE
TRIGGER`, owner only) or dropping them gets round them, and the seals make such tampering evident
(docs/audit.md).
"""

from django.db import migrations

FUNCTIONS = """
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'The audit trail is append-only: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Whatever the application passes, txid is the writing transaction's own (top-level) id: sealing relies
-- on it to know when a row can no longer appear below the horizon.
CREATE FUNCTION audit_event_set_txid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.txid := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END;
$$;
"""

TRIGGERS = """
CREATE TRIGGER audit_event_set_txid BEFORE INSERT ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_set_txid();
CREATE TRIGGER audit_event_refuse_change BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_event_refuse_truncate BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_seal_refuse_change BEFORE UPDATE OR DELETE ON audit_auditseal
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_seal_refuse_truncate BEFORE TRUNCATE ON audit_auditseal
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
"""

DROP = """
DROP TRIGGER audit_seal_refuse_truncate ON audit_auditseal;
DROP TRIGGER audit_seal_refuse_change ON audit_auditseal;
DROP TRIGGER audit_event_refuse_truncate ON audit_auditevent;
DROP TRIGGER audit_event_refuse_change ON audit_auditevent;
DROP TRIGGER audit_event_set_txid ON audit_auditevent;
DROP FUNCTION audit_event_set_txid();
DROP FUNCTION audit_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [migrations.RunSQL(sql=FUNCTIONS + TRIGGERS, reverse_sql=DROP)]
