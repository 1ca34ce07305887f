"""The visit websocket's second-factor check (video.services._otp_verified): what django_otp's middleware decides
for a page, decided from the session's device id, with the device read compiled once per device model."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db.models.sql.compiler import SQLCompiler
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from video.services import _otp_verified

pytestmark = pytest.mark.django_db


def _verified(user, persistent_id) -> bool:  # type: ignore[no-untyped-def]
    return _otp_verified(user, {DEVICE_ID_SESSION_KEY: persistent_id})


def test_the_users_own_confirmed_device_counts_and_is_read_without_compiling_again(personas):
    doctor = personas.practitioner
    device = TOTPDevice.objects.get(user=doctor, confirmed=True)
    assert _verified(doctor, device.persistent_id)
    with mock.patch.object(SQLCompiler, "as_sql", side_effect=AssertionError("compiled again")):
        assert _verified(doctor, device.persistent_id)
    # The older form of the id (a full import path), which django_otp's middleware still accepts.
    assert _verified(doctor, f"django_otp.plugins.otp_totp.models.TOTPDevice/{device.pk}")
    backup = StaticDevice.objects.create(user=doctor, name="backup", confirmed=True)
    assert _verified(doctor, backup.persistent_id)


def test_anything_else_does_not(personas):
    doctor, coordinator = personas.practitioner, personas.coordinator
    device = TOTPDevice.objects.get(user=doctor, confirmed=True)
    assert not _verified(coordinator, device.persistent_id)  # someone else's device
    assert not _otp_verified(doctor, {})
    assert not _otp_verified(doctor, None)
    for malformed in (
        "",
        42,
        "otp_totp.totpdevice",
        "otp_totp.totpdevice/abc",
        "otp_totp/1",
        "nothing.here/1",
        "accounts.user/1",  # a model, but not a device
        f"otp_totp.totpdevice/{device.pk + 10_000}",
    ):
        assert not _verified(doctor, malformed), malformed
    device.confirmed = False
    device.save(update_fields=["confirmed"])
    assert not _verified(doctor, device.persistent_id)
