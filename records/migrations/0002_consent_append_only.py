"""Consent is evidence: decisions are only ever added, and published consent texts are never changed."""

from django.db import migrations

SQL = """
CREATE FUNCTION records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'Clinical records are never changed or deleted: % on % is refused.', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER records_consentdecision_refuse_change BEFORE UPDATE OR DELETE ON records_consentdecision
    FOR EACH ROW EXECUTE FUNCTION records_refuse_change();
CREATE TRIGGER records_consentdecision_refuse_truncate BEFORE TRUNCATE ON records_consentdecision
    FOR EACH STATEMENT EXECUTE FUNCTION records_refuse_change();
CREATE TRIGGER records_consentdocument_refuse_change BEFORE UPDATE OR DELETE ON records_consentdocument
    FOR EACH ROW EXECUTE FUNCTION records_refuse_change();
CREATE TRIGGER records_consentdocument_refuse_truncate BEFORE TRUNCATE ON records_consentdocument
    FOR EACH STATEMENT EXECUTE FUNCTION records_refuse_change();
"""

REVERSE = """
DROP TRIGGER records_consentdocument_refuse_truncate ON records_consentdocument;
DROP TRIGGER records_consentdocument_refuse_change ON records_consentdocument;
DROP TRIGGER records_consentdecision_refuse_truncate ON records_consentdecision;
DROP TRIGGER records_consentdecision_refuse_change ON records_consentdecision;
DROP FUNCTION records_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("records", "0001_patients_identifiers_consent")]

    operations = [migrations.RunSQL(sql=SQL, reverse_sql=REVERSE)]
