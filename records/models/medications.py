"""Allergies, problems and current medication (EHR-4), and acknowledgements of prescription alerts.

Nothing here is ever deleted: a mistake is marked `entered_in_error`, a change of state is a status change
(database triggers refuse DELETE; acknowledgements are append-only). Free text (substance as written,
reaction, descriptions, drug names, doses, reasons) is encrypted at rest. The coded values (an allergy's
ingredient/class key, a problem's CIE-10 code, a medication's ingredient keys) stay in clear: they come from
closed vocabularies, carry no free text, and let the alert check and a future drug-safety query ("patients
with a penicillin allergy") work without decrypting every row — the same choice as a diagnosis code.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from records import cie10
from records.models.patients import Patient
from teleconsult.fields import EncryptedTextField


class AllergySeverity(models.TextChoices):
    MILD = "mild", _("Leve")
    MODERATE = "moderate", _("Moderada")
    SEVERE = "severe", _("Grave")


class AllergyStatus(models.TextChoices):
    ACTIVE = "active", _("Activa")
    INACTIVE = "inactive", _("Inactiva")
    ENTERED_IN_ERROR = "entered_in_error", _("Registrada por error")


class Allergy(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="allergies")
    substance = EncryptedTextField(_("sustancia"), purpose="records.allergy.substance")
    # The drug knowledge key the substance resolved to ("class:penicillins", "amoxicillin"); "" when the
    # substance is not in the drug table (latex, food): then alerts compare the decrypted text instead.
    allergy_key = models.CharField(max_length=80, blank=True, editable=False)
    reaction = EncryptedTextField(_("reacción"), purpose="records.allergy.reaction", null=True, blank=True)
    severity = models.CharField(_("gravedad"), max_length=16, choices=AllergySeverity.choices)
    status = models.CharField(_("estado"), max_length=16, choices=AllergyStatus.choices, default=AllergyStatus.ACTIVE)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "status"], name="records_allergy_patient")]
        constraints = [
            models.CheckConstraint(condition=Q(severity__in=AllergySeverity.values), name="records_allergy_severity"),
            models.CheckConstraint(condition=Q(status__in=AllergyStatus.values), name="records_allergy_status"),
        ]

    def __str__(self) -> str:
        return f"allergy #{self.pk} of patient #{self.patient_id}"


class ProblemStatus(models.TextChoices):
    ACTIVE = "active", _("Activo")
    RESOLVED = "resolved", _("Resuelto")
    ENTERED_IN_ERROR = "entered_in_error", _("Registrado por error")


class Problem(models.Model):
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="problems")
    cie10_code = models.CharField(_("código CIE-10"), max_length=8)
    description = EncryptedTextField(_("descripción"), purpose="records.problem.description", null=True, blank=True)
    status = models.CharField(_("estado"), max_length=16, choices=ProblemStatus.choices, default=ProblemStatus.ACTIVE)
    onset_date = models.DateField(_("fecha de inicio"), null=True, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "status"], name="records_problem_patient")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ProblemStatus.values), name="records_problem_status"),
        ]

    def __str__(self) -> str:
        return f"problem #{self.pk} of patient #{self.patient_id}"

    @property
    def cie10_entry(self) -> cie10.Cie10Entry | None:
        """The code's titles (both languages), from the in-memory list: no query."""
        return cie10.lookup(self.cie10_code)


class MedicationStatus(models.TextChoices):
    ACTIVE = "active", _("En curso")
    STOPPED = "stopped", _("Suspendida")
    ENTERED_IN_ERROR = "entered_in_error", _("Registrada por error")


class MedicationSource(models.TextChoices):
    REPORTED = "reported", _("Referida por el paciente")
    PRESCRIBED = "prescribed", _("Prescrita")


class Medication(models.Model):
    """A medicine the patient currently takes (or took): reported by the patient or prescribed here."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="medications")
    drug_name = EncryptedTextField(_("medicamento"), purpose="records.medication.drug_name")
    ingredient_keys = ArrayField(models.CharField(max_length=64), default=list, blank=True, editable=False)
    dose = EncryptedTextField(_("dosis"), purpose="records.medication.dose", null=True, blank=True)
    status = models.CharField(
        _("estado"), max_length=16, choices=MedicationStatus.choices, default=MedicationStatus.ACTIVE
    )
    source = models.CharField(_("origen"), max_length=16, choices=MedicationSource.choices)
    # The prescription (its uuid in the note content) this medication came from, when prescribed here.
    prescription_id = models.CharField(max_length=36, blank=True)
    started_on = models.DateField(_("inicio"), null=True, blank=True)
    stopped_on = models.DateField(_("fin"), null=True, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "status"], name="records_medication_patient")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=MedicationStatus.values), name="records_medication_status"),
            models.CheckConstraint(condition=Q(source__in=MedicationSource.values), name="records_medication_source"),
            models.CheckConstraint(
                condition=Q(stopped_on__isnull=True)
                | Q(started_on__isnull=True)
                | Q(stopped_on__gte=models.F("started_on")),
                name="records_medication_period",
            ),
        ]

    def __str__(self) -> str:
        return f"medication #{self.pk} of patient #{self.patient_id}"


class AlertKind(models.TextChoices):
    ALLERGY = "allergy", _("Alergia")
    INTERACTION = "interaction", _("Interacción")


class PrescriptionAlertAcknowledgement(models.Model):
    """A prescriber saw an alert on a prescription of a note and went ahead, giving a reason. Append-only."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    note = models.ForeignKey("records.ClinicalNote", on_delete=models.PROTECT, related_name="alert_acknowledgements")
    prescription_id = models.CharField(max_length=36)
    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    alert_key = models.CharField(max_length=200)
    severity = models.CharField(max_length=16)
    reason = EncryptedTextField(_("motivo"), purpose="records.prescriptionalert.reason")
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    acknowledged_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["note", "prescription_id", "kind", "alert_key"], name="records_alert_ack_once"
            ),
            models.CheckConstraint(condition=Q(kind__in=AlertKind.values), name="records_alert_ack_kind"),
        ]

    def __str__(self) -> str:
        return f"alert acknowledgement #{self.pk} on note #{self.note_id}"
