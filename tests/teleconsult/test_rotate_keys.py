"""Key rotation online: new data key, resumable batch re-encryption, retirement, KEK re-wrap."""

import base64
import io

import pytest
from django.core.management import call_command
from django.db import connection

from records.models import Patient
from teleconsult import crypto, keyrotation
from teleconsult.models import DataKey, DataKeyStatus
from tests.teleconsult.test_crypto import make_patient


def key_ids_in_use() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT phone, email, address FROM records_patient")
        return {crypto.key_id_of(bytes(v)) for row in cursor.fetchall() for v in row if v is not None}


@pytest.mark.django_db
def test_rotation_reencrypts_everything_and_retires_the_old_key():
    patients = [make_patient(phone=f"+51 900 000 {i:03d}") for i in range(25)]
    old = DataKey.objects.get(status=DataKeyStatus.ACTIVE)
    out = io.StringIO()
    call_command("rotate_keys", "--no-wait", "--batch-size", "7", stdout=out)
    new = DataKey.objects.get(status=DataKeyStatus.ACTIVE)
    assert new.pk != old.pk
    assert key_ids_in_use() == {new.pk}
    assert DataKey.objects.get(pk=old.pk).status == DataKeyStatus.RETIRED
    crypto.reset_keyring()
    assert [p.phone for p in Patient.objects.order_by("pk")] == [p.phone for p in patients]
    text = out.getvalue()
    assert "75/75 values" in text
    assert f"Data key #{old.pk} retired" in text


@pytest.mark.django_db
def test_interrupted_rotation_resumes_without_loss():
    for i in range(20):
        make_patient(phone=f"+51 911 111 {i:03d}")
    old = DataKey.objects.get(status=DataKeyStatus.ACTIVE)
    keyrotation.introduce_new_key()
    column = next(c for c in keyrotation.encrypted_columns() if c.label == "records.Patient.phone")

    class Interrupted(Exception):
        pass

    def stop_after_first_batch(step):
        raise Interrupted

    with pytest.raises(Interrupted):
        keyrotation.reencrypt_column(column, batch_size=5, progress=stop_after_first_batch)
    # The first batch committed; the rest still decrypts with the retiring key meanwhile.
    assert keyrotation.count_not_under(column, keyrotation.active_key().pk) == 15
    crypto.reset_keyring()
    assert Patient.objects.count() == 20 and all(p.phone.startswith("+51 911") for p in Patient.objects.all())
    retired, still_used = keyrotation.retire_unused_keys()
    assert retired == [] and still_used[old.pk] > 0  # not retired while anything uses it

    out = io.StringIO()
    call_command("rotate_keys", "--resume", stdout=out)
    assert key_ids_in_use() == {keyrotation.active_key().pk}
    assert DataKey.objects.get(pk=old.pk).status == DataKeyStatus.RETIRED


@pytest.mark.django_db
def test_a_late_write_under_a_retired_key_is_still_readable_and_resume_fixes_it(caplog):
    make_patient()
    old_id = DataKey.objects.get(status=DataKeyStatus.ACTIVE).pk
    late_writer = crypto.Keyring(crypto.configured_keys())
    late_writer.active_key_id()  # another process cached the soon-to-retire key before the rotation
    call_command("rotate_keys", "--no-wait", stdout=io.StringIO())
    assert DataKey.objects.get(pk=old_id).status == DataKeyStatus.RETIRED
    # Its write lands after retirement (what rotate_keys' wait normally prevents).
    blob = late_writer.encrypt(b"+51 922 222 222", purpose="records.patient.phone")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE records_patient SET phone = %s", [blob])
    crypto.reset_keyring()
    assert Patient.objects.get().phone == "+51 922 222 222"  # nothing lost
    assert "retired data key" in caplog.text
    call_command("rotate_keys", "--resume", stdout=io.StringIO())
    assert key_ids_in_use() == {keyrotation.active_key().pk}


@pytest.mark.django_db
def test_kek_rotation_rewraps_data_keys(settings):
    make_patient(phone="+51 933 333 333")
    old_kek = settings.TELECONSULT_KEK
    new_kek = bytes(range(32))
    settings.TELECONSULT_KEK = new_kek
    settings.TELECONSULT_KEK_PREVIOUS = [old_kek]
    crypto.reset_keyring()
    assert Patient.objects.get().phone == "+51 933 333 333"  # old KEK still unwraps
    out = io.StringIO()
    call_command("rotate_keys", "--rewrap", stdout=out)
    assert "Re-wrapped 1 data key" in out.getvalue()
    assert DataKey.objects.get().kek_id == crypto.kek_fingerprint(new_kek)
    settings.TELECONSULT_KEK_PREVIOUS = []
    crypto.reset_keyring()
    assert Patient.objects.get().phone == "+51 933 333 333"  # the new KEK alone suffices now


def test_previous_kek_setting_is_validated(monkeypatch):
    import subprocess
    import sys

    env = {"TELECONSULT_KEK_PREVIOUS": base64.b64encode(b"short").decode()}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','teleconsult.settings'); django.setup()",
        ],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TELECONSULT_KEK_PREVIOUS entry 1 must decode to exactly 32 bytes" in result.stderr
