"""Scheduling: visit types, practitioners' availability, appointments with their participants, join links."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeOperators
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Establishment
from records.models import Patient, ServiceType  # one vocabulary for appointments and their encounters
from teleconsult.fields import EncryptedTextField


class Modality(models.TextChoices):
    VIDEO = "video", _("Video")
    AUDIO = "audio", _("Solo audio")


class VisitType(models.Model):
    """What can be booked at an establishment: its length, the pause after it, its service and modality."""

    establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="visit_types")
    name = models.CharField(_("nombre"), max_length=120)
    specialty = models.CharField(_("especialidad"), max_length=120)
    service_type = models.CharField(_("tipo de servicio"), max_length=32, choices=ServiceType.choices)
    modality = models.CharField(_("modalidad"), max_length=16, choices=Modality.choices, default=Modality.VIDEO)
    duration_minutes = models.PositiveSmallIntegerField(
        _("duración (minutos)"), validators=[MinValueValidator(5), MaxValueValidator(240)]
    )
    buffer_minutes = models.PositiveSmallIntegerField(
        _("pausa después (minutos)"), default=0, validators=[MaxValueValidator(120)]
    )
    is_active = models.BooleanField(_("activo"), default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["establishment_id", "specialty", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_minutes__gte=5, duration_minutes__lte=240), name="scheduling_visittype_duration"
            ),
            models.CheckConstraint(condition=Q(buffer_minutes__lte=120), name="scheduling_visittype_buffer"),
            models.CheckConstraint(
                condition=Q(service_type__in=ServiceType.values), name="scheduling_visittype_service_valid"
            ),
            models.CheckConstraint(condition=Q(modality__in=Modality.values), name="scheduling_visittype_modality"),
            models.UniqueConstraint(fields=["establishment", "name"], name="scheduling_visittype_unique_name"),
        ]
        indexes = [models.Index(fields=["specialty"], name="scheduling_vt_specialty")]

    def __str__(self) -> str:
        return f"visit type #{self.pk}"


class Weekday(models.IntegerChoices):
    MONDAY = 0, _("lunes")
    TUESDAY = 1, _("martes")
    WEDNESDAY = 2, _("miércoles")
    THURSDAY = 3, _("jueves")
    FRIDAY = 4, _("viernes")
    SATURDAY = 5, _("sábado")
    SUNDAY = 6, _("domingo")


class AvailabilityRule(models.Model):
    """A weekly recurring session: on `weekday`, from `start_time` to `end_time` in the establishment's time
    zone (wall-clock times, so a session stays at 08:00 across DST changes), for the listed visit types."""

    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="availability_rules"
    )
    establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="availability_rules")
    weekday = models.PositiveSmallIntegerField(_("día"), choices=Weekday.choices)
    start_time = models.TimeField(_("desde"))
    end_time = models.TimeField(_("hasta"))
    valid_from = models.DateField(_("vigente desde"))
    valid_until = models.DateField(_("vigente hasta"), null=True, blank=True)
    visit_types = models.ManyToManyField(VisitType, related_name="availability_rules", verbose_name=_("tipos de cita"))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["weekday", "start_time"]
        constraints = [
            models.CheckConstraint(condition=Q(end_time__gt=F("start_time")), name="scheduling_rule_end_after_start"),
            models.CheckConstraint(condition=Q(weekday__gte=0, weekday__lte=6), name="scheduling_rule_weekday"),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gte=F("valid_from")),
                name="scheduling_rule_validity",
            ),
        ]
        indexes = [models.Index(fields=["practitioner", "weekday"], name="scheduling_rule_practitioner")]

    def __str__(self) -> str:
        return f"availability rule #{self.pk}"


class ExceptionKind(models.TextChoices):
    LEAVE = "leave", _("Licencia / vacaciones")
    BLOCK = "block", _("Bloqueo")
    EXTRA = "extra", _("Sesión adicional")


class AvailabilityException(models.Model):
    """A one-off change to the weekly rules: leave or a block removes time, an extra session adds some.

    Leave applies at every establishment; a block or an extra session at one establishment.
    """

    practitioner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="availability_exceptions"
    )
    establishment = models.ForeignKey(
        Establishment, on_delete=models.PROTECT, null=True, blank=True, related_name="availability_exceptions"
    )
    kind = models.CharField(_("tipo"), max_length=16, choices=ExceptionKind.choices)
    during = DateTimeRangeField(_("periodo"))
    # Only for extra sessions: what may be booked in them (empty means the establishment's active types).
    visit_types = models.ManyToManyField(VisitType, blank=True, related_name="+", verbose_name=_("tipos de cita"))
    # A short administrative label ("Congreso", "Vacaciones"), never clinical detail.
    label = models.CharField(_("motivo"), max_length=120, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["during"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=ExceptionKind.values), name="scheduling_exception_kind"),
            models.CheckConstraint(
                condition=Q(kind="leave") | Q(establishment__isnull=False), name="scheduling_exception_establishment"
            ),
        ]
        indexes = [models.Index(fields=["practitioner", "kind"], name="scheduling_exc_practitioner")]

    def __str__(self) -> str:
        return f"availability exception #{self.pk}"


class AppointmentStatus(models.TextChoices):
    HELD = "held", _("Reservada (por confirmar)")
    BOOKED = "booked", _("Confirmada")
    IN_PROGRESS = "in_progress", _("En curso")
    COMPLETED = "completed", _("Atendida")
    CANCELLED = "cancelled", _("Cancelada")
    NO_SHOW = "no_show", _("No se presentó")
    EXPIRED = "expired", _("Reserva vencida")
    RESCHEDULED = "rescheduled", _("Reprogramada")


# Appointments in these states hold their participants' calendars.
ACTIVE_STATUSES = (AppointmentStatus.HELD, AppointmentStatus.BOOKED, AppointmentStatus.IN_PROGRESS)


class CancelReason(models.TextChoices):
    PATIENT_REQUEST = "patient_request", _("A pedido del paciente")
    PRACTITIONER_UNAVAILABLE = "practitioner_unavailable", _("Profesional no disponible")
    ESTABLISHMENT = "establishment", _("Decisión del establecimiento")
    DUPLICATE = "duplicate", _("Cita duplicada")
    OTHER = "other", _("Otro motivo")


class Appointment(models.Model):
    """A booked (or held) visit. Its participants' calendars are blocked through AppointmentParticipant."""

    # What URLs and links name: says nothing about the patient and cannot be enumerated.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="appointments")
    visit_type = models.ForeignKey(VisitType, on_delete=models.PROTECT, related_name="appointments")
    service_type = models.CharField(max_length=32, choices=ServiceType.choices)
    modality = models.CharField(max_length=16, choices=Modality.choices)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="appointments")
    start = models.DateTimeField()
    end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=AppointmentStatus.choices, default=AppointmentStatus.HELD)
    hold_expires_at = models.DateTimeField(null=True, blank=True)
    booked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    cancel_reason = models.CharField(max_length=32, choices=CancelReason.choices, blank=True)
    # Free text from the person cancelling may mention health: kept encrypted, shown only to staff.
    cancel_note = EncryptedTextField(purpose="scheduling.appointment.cancel_note", null=True, blank=True)
    no_show_at = models.DateTimeField(null=True, blank=True)
    no_show_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # A reschedule ends this appointment and books a new one pointing back to it.
    rescheduled_from = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="rescheduled_to"
    )
    # iCalendar SEQUENCE of the invitations sent: grows with every change a calendar must take.
    sequence = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["start"]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="scheduling_appointment_end_after_start"),
            models.CheckConstraint(
                condition=Q(status__in=AppointmentStatus.values), name="scheduling_appointment_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="held") | Q(hold_expires_at__isnull=False),
                name="scheduling_appointment_hold_expiry",
            ),
        ]
        indexes = [
            models.Index(fields=["establishment", "start"], name="scheduling_appt_estab_start"),
            models.Index(fields=["patient", "start"], name="scheduling_appt_patient_start"),
            models.Index(fields=["status", "start"], name="scheduling_appt_status_start"),
        ]

    def __str__(self) -> str:
        return f"appointment #{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class ParticipantRole(models.TextChoices):
    PATIENT = "patient", _("Paciente")
    PRACTITIONER = "practitioner", _("Profesional tratante")
    CONSULTED = "consulted", _("Especialista consultado")
    INTERPRETER = "interpreter", _("Intérprete")


class AppointmentParticipant(models.Model):
    """One person's place in an appointment, and the block it puts on their calendar.

    `calendar` names whose calendar is blocked ("user:12", or "patient:7" for a patient without a login),
    and the exclusion constraint below makes two active blocks of one calendar overlap impossible (SCH-4):
    whatever the application does, PostgreSQL refuses a double booking.
    """

    appointment = models.ForeignKey(Appointment, on_delete=models.PROTECT, related_name="participants")
    role = models.CharField(max_length=16, choices=ParticipantRole.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="participations"
    )
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    # The establishment the participant takes part from (origin and consulted establishments differ).
    establishment = models.ForeignKey(
        Establishment, on_delete=models.PROTECT, null=True, blank=True, related_name="participations"
    )
    calendar = models.CharField(max_length=32)
    # The appointment's time plus the practitioner's pause after it.
    during = DateTimeRangeField()
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            ExclusionConstraint(
                name="scheduling_no_double_booking",
                expressions=[("calendar", RangeOperators.EQUAL), ("during", RangeOperators.OVERLAPS)],
                condition=Q(active=True),
            ),
            models.UniqueConstraint(fields=["appointment", "calendar"], name="scheduling_participant_once"),
            models.CheckConstraint(
                condition=Q(role="patient", patient__isnull=False) | (~Q(role="patient") & Q(user__isnull=False)),
                name="scheduling_participant_identity",
            ),
        ]
        indexes = [models.Index(fields=["user", "active"], name="scheduling_part_user")]

    def __str__(self) -> str:
        return f"participant #{self.pk}"


class JoinLink(models.Model):
    """A participant's personal link to the visit (SCH-7).

    The token is 256 random bits. Only its SHA-256 is searchable; the token itself is kept encrypted so the
    worker can put it in reminders. A new link revokes the previous one of the same participant.
    """

    participant = models.ForeignKey(AppointmentParticipant, on_delete=models.PROTECT, related_name="join_links")
    token_sha256 = models.CharField(max_length=64, unique=True)
    token = EncryptedTextField(purpose="scheduling.join_link.token")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    first_used_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Patients without an account prove who they are on first use; failures lock the link after a few tries.
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_failures = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["participant"], condition=Q(revoked_at__isnull=True), name="scheduling_one_live_link"
            ),
        ]

    def __str__(self) -> str:
        return f"join link #{self.pk}"


class NotificationKind(models.TextChoices):
    CONFIRMATION = "confirmation", _("Confirmación")
    REMINDER_24H = "reminder_24h", _("Recordatorio (24 horas antes)")
    REMINDER_1H = "reminder_1h", _("Recordatorio (1 hora antes)")
    RESCHEDULED = "rescheduled", _("Aviso de reprogramación")
    CANCELLED = "cancelled", _("Aviso de cancelación")
    JOIN_LINK = "join_link", _("Enlace para unirse")


class NotificationChannel(models.TextChoices):
    EMAIL = "email", _("Correo electrónico")
    # A text message: SMS or WhatsApp, whichever the configured messaging backend delivers through.
    SMS = "sms", _("SMS / WhatsApp")


class NotificationStatus(models.TextChoices):
    PENDING = "pending", _("Pendiente")
    SENT = "sent", _("Enviada")
    FAILED = "failed", _("Fallida")
    SKIPPED = "skipped", _("Omitida")


class Notification(models.Model):
    """One message to one participant about one appointment through one channel (SCH-8): the worker's outbox.

    The idempotency key makes a message exist once however often it is planned; the worker sends a row at
    most once (it locks the row and sends only while it is pending). Addresses and the join link are read
    when the message is sent, never stored here.
    """

    appointment = models.ForeignKey(Appointment, on_delete=models.PROTECT, related_name="notifications")
    participant = models.ForeignKey(AppointmentParticipant, on_delete=models.PROTECT, related_name="notifications")
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    channel = models.CharField(max_length=8, choices=NotificationChannel.choices)
    idempotency_key = models.CharField(max_length=200, unique=True)
    # The appointment's start when the message was planned: a reminder whose appointment moved is skipped.
    appointment_start = models.DateTimeField()
    status = models.CharField(max_length=8, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the next (or first) attempt is due; reminders are due 24 h and 1 h before the start.
    next_attempt_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    # An error class name or a skip reason code: never an address, a name or a provider's message text.
    last_error = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["next_attempt_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=NotificationKind.values), name="scheduling_notification_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=NotificationChannel.values), name="scheduling_notification_channel_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=NotificationStatus.values), name="scheduling_notification_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False), name="scheduling_notification_sent_at"
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="scheduling_notif_due")]

    def __str__(self) -> str:
        return f"notification #{self.pk}"
