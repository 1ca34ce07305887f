"""Data-protection rights requests under Law 29733 (SEC-4): access, rectification, cancellation,
opposition and portability, each with a legal due date in Peruvian business days."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from records.models.patients import Patient
from teleconsult.fields import EncryptedTextField


class RightsKind(models.TextChoices):
    ACCESS = "access", _("Acceso")
    RECTIFICATION = "rectification", _("Rectificación")
    CANCELLATION = "cancellation", _("Cancelación")
    OPPOSITION = "opposition", _("Oposición")
    PORTABILITY = "portability", _("Portabilidad")


class RightsStatus(models.TextChoices):
    RECEIVED = "received", _("Recibida")
    IN_PROGRESS = "in_progress", _("En trámite")
    WAITING = "waiting", _("En espera")
    COMPLETED = "completed", _("Atendida")
    REJECTED = "rejected", _("Denegada")


OPEN_STATUSES = (RightsStatus.RECEIVED, RightsStatus.IN_PROGRESS, RightsStatus.WAITING)


class DataRightsRequest(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="rights_requests")
    kind = models.CharField(_("derecho"), max_length=16, choices=RightsKind.choices)
    description = EncryptedTextField(_("detalle de la solicitud"), purpose="records.rights.description")
    filed_at = models.DateTimeField(default=timezone.now)
    filed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    due_date = models.DateField(_("fecha límite"))
    # One extension of equal length is allowed, with its reason recorded.
    extended_due_date = models.DateField(null=True, blank=True)
    extension_reason = EncryptedTextField(purpose="records.rights.extension_reason", null=True, blank=True)
    status = models.CharField(max_length=16, choices=RightsStatus.choices, default=RightsStatus.RECEIVED)
    resolution = EncryptedTextField(purpose="records.rights.resolution", null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["status", "due_date"], name="records_rights_queue")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=RightsKind.values), name="records_rights_kind"),
            models.CheckConstraint(
                condition=Q(extended_due_date__isnull=True) | Q(extended_due_date__gt=models.F("due_date")),
                name="records_rights_extension_later",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} request #{self.pk} ({self.status})"

    @property
    def effective_due_date(self) -> dt.date:
        return self.extended_due_date or self.due_date
