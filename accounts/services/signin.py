"""Writes for signing in: password and second-factor checks with throttling, enrolment, backup codes, re-authentication.

Every outcome is audited. Audit details hold ids, reasons and counts only: never the e-mail typed, never a code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.contrib.auth import authenticate
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from django_otp import devices_for_user
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import selectors, throttle
from accounts.models import User
from accounts.throttle import ThrottleKeys
from audit import services as audit
from audit.actions import AuditAction, Outcome

BACKUP_CODE_COUNT = 10
AUTHENTICATOR_NAME = _("Aplicación de autenticación")
BACKUP_DEVICE_NAME = "backup"


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    LOCKED = "locked"


@dataclass(frozen=True)
class CheckResult:
    status: Status
    user: User | None = None
    device: Device | None = None

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


def _actor(user: User | None) -> audit.Actor:
    if user is None:
        return {"actor_user_id": None, "actor_role": ""}
    return {"actor_user_id": user.pk, "actor_role": user.role}


def _subject(user: User | None) -> audit.Subject:
    return {"object_type": "user", "object_id": user.pk} if user is not None else {}


def device_kind(device: Device) -> str:
    return "backup_code" if isinstance(device, StaticDevice) else "totp"


def _record_failure(
    *, keys: ThrottleKeys, user: User | None, action: AuditAction, reason: str, stage: str = ""
) -> Status:
    """Count a failure on both counters and audit it (and the lockout it may cause), in one transaction."""
    details: dict[str, object] = {"reason": reason}
    if stage:
        details["stage"] = stage
    with transaction.atomic():
        newly_locked = throttle.record_failure(keys)
        audit.record(action=action, outcome=Outcome.FAILURE, details=details, **_actor(user), **_subject(user))
        if newly_locked:
            audit.record(
                action=AuditAction.SIGNIN_LOCKED_OUT,
                outcome=Outcome.DENIED,
                details={"scopes": newly_locked},
                **_actor(user),
                **_subject(user),
            )
    return Status.LOCKED if newly_locked else Status.FAILED


def _record_locked(*, user: User | None, action: AuditAction, scopes: list[str]) -> Status:
    with transaction.atomic():
        audit.record(
            action=action,
            outcome=Outcome.DENIED,
            details={"reason": "locked_out", "scopes": scopes},
            **_actor(user),
            **_subject(user),
        )
    return Status.LOCKED


def signin_check_password(*, email: str, password: str, address: str) -> CheckResult:
    """First step of signing in. OK carries the user; FAILED and LOCKED carry nothing the caller may show."""
    keys = ThrottleKeys.for_attempt(email=email, address=address)
    # The password is hashed on every path (Django's ModelBackend hashes it even for unknown e-mails, and a
    # locked counter does not skip it), so response time does not tell which accounts exist.
    user = authenticate(None, email=throttle.normalise_email(email), password=password)
    locked = throttle.locked_scopes(keys)
    if user is not None and not locked:
        return CheckResult(Status.OK, user=user)
    known = selectors.user_by_email(email)
    if locked:
        return CheckResult(_record_locked(user=known, action=AuditAction.SIGNIN_FAILED, scopes=locked))
    reason = "inactive_account" if known is not None and not known.is_active else "bad_credentials"
    return CheckResult(_record_failure(keys=keys, user=known, action=AuditAction.SIGNIN_FAILED, reason=reason))


@transaction.atomic
def signin_record_success(*, user: User, second_factor: str) -> None:
    """The sign-in is complete (password, and second factor when the user has one): forgive earlier failures."""
    throttle.clear_account(email=user.email)
    audit.record(
        action=AuditAction.SIGNIN_SUCCEEDED,
        details={"second_factor": second_factor},
        **_actor(user),
        **_subject(user),
    )


def _match_token(user: User, token: str) -> Device | None:
    """The confirmed device that accepts `token`, consuming it (a TOTP step or a backup code). Call inside a
    transaction: devices are locked so one code cannot be used twice concurrently."""
    for device in devices_for_user(user, confirmed=True, for_verify=True):
        if device.verify_token(token):
            return device
    return None


def _audit_second_factor_used(*, user: User, device: Device, action: AuditAction) -> None:
    audit.record(action=action, details={"method": device_kind(device)}, **_actor(user), **_subject(user))
    if isinstance(device, StaticDevice):
        audit.record(
            action=AuditAction.BACKUP_CODE_USED,
            details={"remaining": device.token_set.count()},
            **_actor(user),
            **_subject(user),
        )


def otp_check(*, user: User, token: str, address: str) -> CheckResult:
    """Second step of signing in: a TOTP code or a backup code. Wrong codes count towards the lockout."""
    keys = ThrottleKeys.for_attempt(email=user.email, address=address)
    locked = throttle.locked_scopes(keys)
    if locked:
        return CheckResult(_record_locked(user=user, action=AuditAction.OTP_FAILED, scopes=locked))
    with transaction.atomic():
        device = _match_token(user, token)
        if device is not None:
            _audit_second_factor_used(user=user, device=device, action=AuditAction.OTP_VERIFIED)
            return CheckResult(Status.OK, user=user, device=device)
    return CheckResult(
        _record_failure(keys=keys, user=user, action=AuditAction.OTP_FAILED, reason="wrong_code", stage="signin")
    )


@transaction.atomic
def totp_device_start(*, user: User) -> TOTPDevice:
    """The unconfirmed authenticator being enrolled (the same one on reload, so the QR code stays valid)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=str(AUTHENTICATOR_NAME), confirmed=False)
    return device


def _generate_backup_codes(user: User) -> list[str]:
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=BACKUP_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    audit.record(
        action=AuditAction.BACKUP_CODES_GENERATED,
        details={"count": len(codes)},
        **_actor(user),
        **_subject(user),
    )
    return codes


@transaction.atomic
def totp_enrolment_confirm(*, user: User, device_id: int, token: str) -> tuple[TOTPDevice, list[str]] | None:
    """Confirm the authenticator with a code from it; then issue the backup codes (returned once, to show).
    None when the code is wrong (audited; enrolment mistakes do not count towards the lockout, since the
    person already proved their password and is only typing from a new app)."""
    device = TOTPDevice.objects.select_for_update().filter(pk=device_id, user=user, confirmed=False).first()
    if device is None or not device.verify_token(token):
        audit.record(
            action=AuditAction.OTP_FAILED,
            outcome=Outcome.FAILURE,
            details={"reason": "wrong_code", "stage": "enrolment"},
            **_actor(user),
            **_subject(user),
        )
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    # One authenticator per person: abandoned enrolments (other unconfirmed secrets) are discarded.
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    audit.record(action=AuditAction.OTP_ENROLLED, details={"device": device.pk}, **_actor(user), **_subject(user))
    return device, _generate_backup_codes(user)


@transaction.atomic
def backup_codes_generate(*, user: User) -> list[str]:
    """Replace the user's backup codes with a fresh set (the old ones stop working)."""
    return _generate_backup_codes(user)


def reauth_check(*, user: User, password: str, token: str, address: str) -> CheckResult:
    """Re-authentication before a sensitive action: the password, plus the second factor when the user has one."""
    keys = ThrottleKeys.for_attempt(email=user.email, address=address)
    password_ok = user.check_password(password)
    locked = throttle.locked_scopes(keys)
    if locked:
        return CheckResult(_record_locked(user=user, action=AuditAction.REAUTH_FAILED, scopes=locked))
    if password_ok:
        with transaction.atomic():
            if not selectors.has_confirmed_authenticator(user):
                audit.record(
                    action=AuditAction.REAUTH_SUCCEEDED,
                    details={"method": "password"},
                    **_actor(user),
                    **_subject(user),
                )
                return CheckResult(Status.OK, user=user)
            device = _match_token(user, token) if token else None
            if device is not None:
                _audit_second_factor_used(user=user, device=device, action=AuditAction.REAUTH_SUCCEEDED)
                return CheckResult(Status.OK, user=user, device=device)
    reason = "wrong_code" if password_ok else "bad_credentials"
    return CheckResult(_record_failure(keys=keys, user=user, action=AuditAction.REAUTH_FAILED, reason=reason))


@transaction.atomic
def signout_record(*, user: User) -> None:
    audit.record(action=AuditAction.SIGNOUT, **_actor(user), **_subject(user))


@transaction.atomic
def session_expired_record(*, user: User, idle_seconds: int) -> None:
    audit.record(
        action=AuditAction.SESSION_EXPIRED,
        details={"idle_seconds": idle_seconds},
        **_actor(user),
        **_subject(user),
    )


def password_change_refused(*, user: User, address: str) -> Status:
    """A wrong current password on the password-change form is a guess like any other: counted and audited."""
    keys = ThrottleKeys.for_attempt(email=user.email, address=address)
    return _record_failure(keys=keys, user=user, action=AuditAction.PASSWORD_CHANGED, reason="bad_credentials")
