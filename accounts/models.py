"""Identities: users with one role each, establishments, staff memberships and practitioner registry data."""

from __future__ import annotations

import zoneinfo
from typing import TYPE_CHECKING

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    PATIENT = "patient", _("Paciente")
    PRACTITIONER = "practitioner", _("Profesional de salud")
    COORDINATOR = "coordinator", _("Coordinador(a)")
    CLINIC_ADMIN = "clinic_admin", _("Administrador(a) de la clínica")
    AUDITOR = "auditor", _("Auditor(a)")


STAFF_ROLES = frozenset({Role.PRACTITIONER, Role.COORDINATOR, Role.CLINIC_ADMIN, Role.AUDITOR})


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("Zona horaria desconocida."), code="unknown_time_zone")


class Establishment(models.Model):
    """A health establishment (IPRESS), identified nationally by its RENIPRESS code."""

    name = models.CharField(_("nombre"), max_length=200)
    renipress_code = models.CharField(
        _("código RENIPRESS"),
        max_length=8,
        unique=True,
        validators=[RegexValidator(r"^\d{1,8}$", _("El código RENIPRESS tiene hasta 8 dígitos."))],
    )
    time_zone = models.CharField(
        _("zona horaria"), max_length=64, default="America/Lima", validators=[validate_time_zone]
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("establecimiento")
        verbose_name_plural = _("establecimientos")

    def __str__(self) -> str:
        return f"{self.name} ({self.renipress_code})"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: object) -> User:
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: object) -> User:
        fields.setdefault("role", Role.CLINIC_ADMIN)
        fields["is_superuser"] = True
        return self.create_user(email, password, **fields)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):
    """Anyone who signs in. A patient record may exist without a user (records/ owns patients)."""

    email = models.EmailField(_("correo electrónico"), max_length=254, unique=True)
    full_name = models.CharField(_("nombre completo"), max_length=200)
    role = models.CharField(_("rol"), max_length=32, choices=Role.choices)
    is_active = models.BooleanField(_("activo"), default=True)
    preferred_language = models.CharField(
        max_length=8, default="es-pe", choices=[("es-pe", "Español"), ("en", "English")]
    )
    # The zone times are shown in when it differs from the establishment's (a specialist abroad, SCH-6);
    # blank means the establishment's zone.
    time_zone = models.CharField(_("zona horaria"), max_length=64, blank=True, validators=[validate_time_zone])
    date_joined = models.DateTimeField(default=timezone.now, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["full_name", "role"]

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="accounts_user_role_valid"),
        ]
        verbose_name = _("usuario")
        verbose_name_plural = _("usuarios")

    def __str__(self) -> str:
        return f"user #{self.pk}"

    if TYPE_CHECKING:
        # Attached by django-otp's OTPMiddleware to the user of each request: whether this session passed the
        # second factor. A User loaded any other way lacks it, so only request users may be asked.
        def is_verified(self) -> bool: ...

    @property
    def is_staff_member(self) -> bool:
        """Clinic staff of any kind (everyone but patients): two-factor sign-in is mandatory for them."""
        return self.role in STAFF_ROLES

    @property
    def is_staff(self) -> bool:
        # Django's own admin site is not installed; nothing should treat anyone as its staff.
        return False


class StaffMembership(models.Model):
    """A staff member belongs to one or more establishments."""

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="memberships")
    establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="memberships")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "establishment"], name="accounts_membership_unique"),
        ]

    def __str__(self) -> str:
        return f"membership user #{self.user_id} at establishment #{self.establishment_id}"


class Profession(models.TextChoices):
    PHYSICIAN = "physician", _("Médico(a)")
    NURSE = "nurse", _("Enfermero(a)")
    MIDWIFE = "midwife", _("Obstetra")
    PSYCHOLOGIST = "psychologist", _("Psicólogo(a)")
    NUTRITIONIST = "nutritionist", _("Nutricionista")
    DENTIST = "dentist", _("Cirujano(a) dentista")


class RegistryBody(models.TextChoices):
    """Peru's professional colleges that issue the registry number printed on every signed note."""

    CMP = "CMP", _("Colegio Médico del Perú")
    CEP = "CEP", _("Colegio de Enfermeros del Perú")
    COP = "COP", _("Colegio de Obstetras del Perú")
    CPSP = "CPsP", _("Colegio de Psicólogos del Perú")
    CNP = "CNP", _("Colegio de Nutricionistas del Perú")
    COPE = "COPE", _("Colegio Odontológico del Perú")


class PractitionerProfile(models.Model):
    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="practitioner_profile")
    profession = models.CharField(_("profesión"), max_length=32, choices=Profession.choices)
    registry_body = models.CharField(_("colegio profesional"), max_length=8, choices=RegistryBody.choices)
    registry_number = models.CharField(
        _("número de colegiatura"),
        max_length=10,
        validators=[RegexValidator(r"^\d{1,10}$", _("El número de colegiatura solo tiene dígitos."))],
    )
    specialty = models.CharField(_("especialidad"), max_length=120, blank=True)
    # Registro Nacional de Especialistas: only for registered specialists.
    rne = models.CharField(
        _("RNE"),
        max_length=10,
        blank=True,
        validators=[RegexValidator(r"^\d{1,10}$", _("El RNE solo tiene dígitos."))],
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["registry_body", "registry_number"], name="accounts_registry_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.registry_body} {self.registry_number}"


class ThrottleScope(models.TextChoices):
    ACCOUNT = "account", _("cuenta")
    ADDRESS = "address", _("dirección de origen")


class SignInThrottle(models.Model):
    """Failed sign-in attempts counted per account and per source address (SEC-2).

    Kept in PostgreSQL so every process sees the same counts. `key_hash` is a keyed hash (HMAC) of the
    normalised e-mail or the address, never the value itself: the table must not become a list of the
    addresses people typed. Rows exist for unknown e-mails too, so a lockout says nothing about existence.
    """

    scope = models.CharField(max_length=16, choices=ThrottleScope.choices)
    key_hash = models.CharField(max_length=64)
    failures = models.PositiveIntegerField(default=0)
    window_started_at = models.DateTimeField()
    locked_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key_hash"], name="accounts_signin_throttle_unique"),
        ]
        indexes = [models.Index(fields=["window_started_at"], name="accounts_throttle_window")]

    def __str__(self) -> str:
        return f"{self.scope} throttle #{self.pk}"
