"""factory_boy factories for accounts (later apps add their own modules)."""

from __future__ import annotations

import factory
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Establishment, PractitionerProfile, Profession, RegistryBody, Role, StaffMembership, User

DEMO_PASSWORD = "correct-horse-battery-9"  # a test-only password that passes the validators


class EstablishmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Establishment

    name = factory.Sequence(lambda n: f"Centro de Salud {n}")
    renipress_code = factory.Sequence(lambda n: f"{10000 + n:08d}")
    time_zone = "America/Lima"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"person{n}@example.test")
    full_name = factory.Faker("name", locale="es")
    role = Role.PATIENT
    password = factory.PostGenerationMethodCall("set_password", DEMO_PASSWORD)

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StaffMembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StaffMembership

    user = factory.SubFactory(UserFactory, role=Role.COORDINATOR)
    establishment = factory.SubFactory(EstablishmentFactory)


class PractitionerProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PractitionerProfile

    user = factory.SubFactory(UserFactory, role=Role.PRACTITIONER)
    profession = Profession.PHYSICIAN
    registry_body = RegistryBody.CMP
    registry_number = factory.Sequence(lambda n: f"{20000 + n}")
    specialty = "Medicina general"


def confirmed_totp_device(user: User) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="app", confirmed=True)


def current_totp_token(device: TOTPDevice) -> str:
    """The code an authenticator app would show right now for this device."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"
