"""Reads for identities: users by e-mail, second-factor state, and the staff a clinic admin manages."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import STAFF_ROLES, Establishment, StaffMembership, User
from accounts.throttle import normalise_email


def user_by_email(email: str) -> User | None:
    return User.objects.filter(email__iexact=normalise_email(email)).first()


def has_confirmed_authenticator(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def authenticators_of(user: User) -> list[TOTPDevice]:
    return list(TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk"))


def backup_codes_remaining(user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def establishments_managed_by(admin: User) -> QuerySet[Establishment]:
    """The active establishments a clinic admin belongs to: the only ones whose staff they manage."""
    return Establishment.objects.filter(memberships__user=admin, is_active=True).distinct().order_by("name")


def staff_managed_by(admin: User) -> QuerySet[User]:
    """Staff (any staff role) with a membership in one of the admin's establishments, with what the list shows."""
    managed = establishments_managed_by(admin)
    memberships = StaffMembership.objects.select_related("establishment").order_by("establishment__name")
    return (
        User.objects.filter(role__in=list(STAFF_ROLES), memberships__establishment__in=managed)
        .distinct()
        .annotate(
            has_authenticator=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)),
        )
        .select_related("practitioner_profile")
        .prefetch_related(Prefetch("memberships", queryset=memberships))
        .order_by("full_name", "pk")
    )
