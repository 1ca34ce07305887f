"""Who may open a chart (SEC-1): care relationships, and break-the-glass access with a stated reason."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from records.models.patients import Patient
from teleconsult.fields import EncryptedTextField


class CareSource(models.TextChoices):
    APPOINTMENT = "appointment", _("Cita")
    ENCOUNTER = "encounter", _("Atención")
    REFERRAL = "referral", _("Interconsulta / referencia")
    ADMIN_ASSIGNMENT = "admin_assignment", _("Asignación administrativa")


class CareRelationship(models.Model):
    """A practitioner takes part in a patient's care for a period (FHIR's CareTeam participant idea).

    Written by whoever creates the relationship (booking, an encounter, a referral, an admin), through
    records.care services; the source's own id is kept so ending it later finds the right row.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="care_relationships")
    practitioner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=24, choices=CareSource.choices)
    source_id = models.CharField(max_length=64, blank=True)
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["practitioner", "patient", "valid_until"], name="records_care_gate")]
        constraints = [
            models.CheckConstraint(condition=Q(valid_until__gt=F("valid_from")), name="records_care_period"),
            models.UniqueConstraint(
                fields=["patient", "practitioner", "source", "source_id"], name="records_care_unique_source"
            ),
        ]

    def __str__(self) -> str:
        return f"care of patient #{self.patient_id} by user #{self.practitioner_id} ({self.source})"


class BreakGlassAccess(models.Model):
    """Emergency access without a care relationship: time-limited, with a reason, audited, auditors told."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    practitioner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The reason can mention the emergency itself, so it is encrypted like clinical text.
    reason = EncryptedTextField(purpose="records.breakglass.reason")
    granted_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["practitioner", "patient", "expires_at"], name="records_breakglass_gate")]

    def __str__(self) -> str:
        return f"break-glass on patient #{self.patient_id} by user #{self.practitioner_id}"
