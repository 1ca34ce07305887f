"""Writes for identities and their administration: each owns its transaction and writes its audit event in it."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Establishment, PractitionerProfile, Role, StaffMembership, User
from audit import services as audit
from audit.actions import AuditAction


def _actor(user: User | None) -> audit.Actor:
    if user is None:
        return {"actor_user_id": None, "actor_role": "system"}
    return {"actor_user_id": user.pk, "actor_role": user.role}


@transaction.atomic
def establishment_create(*, name: str, renipress_code: str, time_zone: str, created_by: User | None) -> Establishment:
    establishment = Establishment(name=name, renipress_code=renipress_code, time_zone=time_zone)
    establishment.full_clean()
    establishment.save()
    audit.record(
        action=AuditAction.ESTABLISHMENT_CREATED,
        object_type="establishment",
        object_id=establishment.pk,
        **_actor(created_by),
    )
    return establishment


@transaction.atomic
def user_create(
    *,
    email: str,
    full_name: str,
    role: Role,
    password: str | None,
    establishments: Iterable[Establishment] = (),
    practitioner: dict[str, str] | None = None,
    created_by: User | None,
) -> User:
    """Create a user with a role; staff get memberships, practitioners their registry data."""
    if role == Role.PRACTITIONER and not practitioner:
        raise ValueError("A practitioner needs profession and registry data.")
    establishments = list(establishments)
    user = User.objects.create_user(email=email, password=password, full_name=full_name, role=role)
    for establishment in establishments:
        StaffMembership.objects.create(user=user, establishment=establishment)
    if practitioner:
        profile = PractitionerProfile(user=user, **practitioner)
        profile.full_clean(exclude=["user"])
        profile.save()
    audit.record(
        action=AuditAction.USER_CREATED,
        object_type="user",
        object_id=user.pk,
        details={"role": role.value, "establishments": [e.pk for e in establishments]},
        **_actor(created_by),
    )
    return user


@transaction.atomic
def user_change_role(*, user: User, role: Role, changed_by: User) -> User:
    # One row lock on the user being changed, so two admins cannot interleave role changes.
    locked = User.objects.select_for_update().get(pk=user.pk)
    previous = locked.role
    if previous == role:
        return locked
    if role == Role.PRACTITIONER and not PractitionerProfile.objects.filter(user=locked).exists():
        raise ValueError("A practitioner needs profession and registry data.")
    locked.role = role
    locked.save(update_fields=["role"])
    audit.record(
        action=AuditAction.ROLE_CHANGED,
        object_type="user",
        object_id=locked.pk,
        details={"from": previous, "to": role.value},
        **_actor(changed_by),
    )
    return locked


@transaction.atomic
def membership_add(*, user: User, establishment: Establishment, added_by: User | None) -> StaffMembership:
    membership, created = StaffMembership.objects.get_or_create(user=user, establishment=establishment)
    if created:
        audit.record(
            action=AuditAction.MEMBERSHIP_ADDED,
            object_type="user",
            object_id=user.pk,
            details={"establishment": establishment.pk},
            **_actor(added_by),
        )
    return membership


@transaction.atomic
def membership_remove(*, user: User, establishment: Establishment, removed_by: User) -> bool:
    deleted, _ = StaffMembership.objects.filter(user=user, establishment=establishment).delete()
    if deleted:
        audit.record(
            action=AuditAction.MEMBERSHIP_REMOVED,
            object_type="user",
            object_id=user.pk,
            details={"establishment": establishment.pk},
            **_actor(removed_by),
        )
    return bool(deleted)


@transaction.atomic
def user_deactivate(*, user: User, deactivated_by: User) -> User:
    """A deactivated user cannot sign in, and their open sessions stop authenticating at the next request."""
    locked = User.objects.select_for_update().get(pk=user.pk)
    if locked.is_active:
        locked.is_active = False
        locked.save(update_fields=["is_active"])
        audit.record(
            action=AuditAction.USER_DEACTIVATED, object_type="user", object_id=locked.pk, **_actor(deactivated_by)
        )
    return locked


@transaction.atomic
def user_reactivate(*, user: User, reactivated_by: User) -> User:
    locked = User.objects.select_for_update().get(pk=user.pk)
    if not locked.is_active:
        locked.is_active = True
        locked.save(update_fields=["is_active"])
        audit.record(
            action=AuditAction.USER_REACTIVATED, object_type="user", object_id=locked.pk, **_actor(reactivated_by)
        )
    return locked


@transaction.atomic
def user_reset_second_factor(*, user: User, reset_by: User) -> int:
    """Delete the user's authenticator and backup codes so they enrol again at their next sign-in.

    django-otp device rows are credentials, not clinical data, so deleting them is allowed; the audit
    event keeps the fact that it happened and who did it.
    """
    totp_deleted, _ = TOTPDevice.objects.filter(user=user).delete()
    static_deleted, _ = StaticDevice.objects.filter(user=user).delete()
    audit.record(
        action=AuditAction.OTP_RESET,
        object_type="user",
        object_id=user.pk,
        details={"authenticator_removed": totp_deleted > 0, "backup_set_removed": static_deleted > 0},
        **_actor(reset_by),
    )
    return totp_deleted


@transaction.atomic
def user_change_password(*, user: User, new_password: str) -> User:
    """Set a new password (already validated by the form) for the user who is changing it themselves."""
    user.set_password(new_password)
    user.save(update_fields=["password"])
    audit.record(action=AuditAction.PASSWORD_CHANGED, object_type="user", object_id=user.pk, **_actor(user))
    return user
