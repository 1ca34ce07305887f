"""Helpers for the accounts tests: signing in through the real forms, codes, audit look-ups."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import SignInThrottle, User
from audit.models import AuditEvent
from tests.factories import DEMO_PASSWORD, current_totp_token

LOGIN = reverse("accounts:login")
OTP = reverse("accounts:otp")
ENROL = reverse("accounts:otp_enrol")


def post_password(client, email: str, password: str = DEMO_PASSWORD, *, next: str | None = None, **meta):
    data = {"email": email, "password": password}
    if next is not None:
        data["next"] = next
    return client.post(LOGIN, data, **meta)


def fresh_code(user: User) -> str:
    """A valid code for the user's authenticator, usable even if one was already used in this 30-second
    step (django-otp refuses a replayed step) or after a deliberate wrong code (django-otp's own delay)."""
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    device.last_t = -1
    device.throttle_reset(commit=False)
    device.save()
    return current_totp_token(device)


def events(action, **filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=str(action), **filters).order_by("id"))


def move_throttle_clock(seconds: int) -> None:
    """Pretend `seconds` have passed for every sign-in counter (windows and lockouts)."""
    shift = dt.timedelta(seconds=seconds)
    for row in SignInThrottle.objects.all():
        row.window_started_at -= shift
        if row.locked_until is not None:
            row.locked_until -= shift
        row.save()


def now() -> dt.datetime:
    return timezone.now()
