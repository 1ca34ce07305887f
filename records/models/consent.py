"""Consent (CON-1..3): versioned documents and an append-only ledger of grants and revocations."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from records.models.patients import Patient
from teleconsult.fields import EncryptedTextField


class ConsentKind(models.TextChoices):
    TELEMEDICINE = "telemedicine", _("Consentimiento informado para telemedicina")
    DATA_PROCESSING = "data_processing", _("Tratamiento de datos personales (Ley 29733)")
    RECORDING_VIDEO = "recording_video", _("Grabación de video")
    RECORDING_AUDIO = "recording_audio", _("Grabación de audio")
    RECORDING_IMAGES = "recording_images", _("Captura de imágenes")
    SHARING = "sharing", _("Compartir con otros establecimientos y el registro nacional de HCE")


RECORDING_KINDS = (ConsentKind.RECORDING_VIDEO, ConsentKind.RECORDING_AUDIO, ConsentKind.RECORDING_IMAGES)


class ConsentDocument(models.Model):
    """One version of one consent text in one language. Published versions are never edited.

    A new version of a kind supersedes the earlier ones: grants of a superseded version no longer
    count, so patients are asked again with the new text.
    """

    kind = models.CharField(_("tipo"), max_length=32, choices=ConsentKind.choices)
    version = models.PositiveIntegerField(_("versión"))
    language = models.CharField(_("idioma"), max_length=8, choices=[("es-pe", "Español"), ("en", "English")])
    title = models.CharField(_("título"), max_length=200)
    text = models.TextField(_("texto"))
    # SHA-256 of the exact text shown; every decision stores it too, proving what was read.
    text_sha256 = models.CharField(max_length=64, editable=False)
    # How long a grant lasts (None: until revoked or superseded).
    validity_days = models.PositiveIntegerField(_("vigencia en días"), null=True, blank=True)
    published_at = models.DateTimeField(default=timezone.now)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "version", "language"], name="records_consent_doc_unique"),
            models.CheckConstraint(condition=Q(kind__in=ConsentKind.values), name="records_consent_doc_kind"),
        ]
        ordering = ["kind", "-version", "language"]

    def __str__(self) -> str:
        return f"{self.kind} v{self.version} ({self.language})"


class Decision(models.TextChoices):
    GRANT = "grant", _("Otorga")
    REVOKE = "revoke", _("Revoca")


class ConsentMethod(models.TextChoices):
    TYPED_NAME = "typed_name", _("Casilla y nombre escrito")
    DRAWN_SIGNATURE = "drawn_signature", _("Firma dibujada")
    VERBAL_WITNESSED = "verbal_witnessed", _("Verbal, registrado por un profesional con testigo")


class ConsentDecision(models.Model):
    """A grant or a revocation. Rows are only ever added (database triggers refuse UPDATE and DELETE):
    a revocation is a new row, and the grant it revokes stays as it was."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="consent_decisions")
    document = models.ForeignKey(ConsentDocument, on_delete=models.PROTECT, related_name="decisions")
    kind = models.CharField(max_length=32, choices=ConsentKind.choices)  # copied for fast gate queries
    decision = models.CharField(max_length=8, choices=Decision.choices)
    method = models.CharField(max_length=24, choices=ConsentMethod.choices)
    text_sha256 = models.CharField(max_length=64)
    decided_at = models.DateTimeField(default=timezone.now, db_index=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    # Who decided: the patient, or their legal representative (for minors and dependents).
    by_representative = models.BooleanField(default=False)
    representative_name = EncryptedTextField(purpose="records.consent.representative_name", null=True, blank=True)
    representative_relationship = models.CharField(max_length=64, blank=True)
    typed_name = EncryptedTextField(purpose="records.consent.typed_name", null=True, blank=True)
    signature_png = EncryptedTextField(purpose="records.consent.signature_png", null=True, blank=True)
    witness_name = EncryptedTextField(purpose="records.consent.witness_name", null=True, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [models.Index(fields=["patient", "kind", "-decided_at"], name="records_consent_gate")]
        constraints = [
            models.CheckConstraint(condition=Q(decision__in=Decision.values), name="records_consent_decision"),
            models.CheckConstraint(condition=Q(method__in=ConsentMethod.values), name="records_consent_method"),
            # Verbal consent is only valid with a witness and a recording practitioner.
            models.CheckConstraint(
                condition=~Q(method="verbal_witnessed")
                | (Q(witness_name__isnull=False) & Q(recorded_by__isnull=False)),
                name="records_consent_verbal_witnessed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.decision} {self.kind} for patient #{self.patient_id}"
