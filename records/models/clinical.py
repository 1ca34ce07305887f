"""The encounter record (EHR-1..6): encounters, their participants, clinical notes, revisions, amendments, signing keys.

Clinical text is encrypted at rest (SEC-3). Signed notes, amendments, revisions and participant snapshots
are protected by database triggers as well as by the services (records/migrations/0009).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Establishment
from records.models.patients import Patient
from teleconsult.fields import EncryptedTextField


class ServiceType(models.TextChoices):
    """Telehealth services named by Peru's telehealth law (Ley 30421 and its regulation)."""

    TELECONSULTA = "teleconsulta", _("Teleconsulta")
    TELEINTERCONSULTA = "teleinterconsulta", _("Teleinterconsulta")
    TELEORIENTACION = "teleorientacion", _("Teleorientación")
    TELEMONITOREO = "telemonitoreo", _("Telemonitoreo")


class Modality(models.TextChoices):
    VIDEO = "video", _("Video")
    AUDIO = "audio", _("Solo audio")
    CHAT = "chat", _("Chat")


class EncounterStatus(models.TextChoices):
    PLANNED = "planned", _("Programada")
    IN_PROGRESS = "in_progress", _("En curso")
    FINISHED = "finished", _("Finalizada")
    CANCELLED = "cancelled", _("Cancelada")


class ParticipantRole(models.TextChoices):
    ATTENDING = "attending", _("Profesional responsable")
    CONSULTANT = "consultant", _("Profesional consultor(a)")
    SUPPORT = "support", _("Profesional de apoyo")


class Encounter(models.Model):
    """One telehealth contact with a patient. Refers to its appointment by the appointment's public id
    (records cannot import scheduling); an unscheduled contact has none."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="encounters")
    appointment_ref = models.CharField(max_length=64, blank=True)
    service_type = models.CharField(_("tipo de servicio"), max_length=24, choices=ServiceType.choices)
    modality_planned = models.CharField(_("modalidad programada"), max_length=8, choices=Modality.choices)
    modality_used = models.CharField(_("modalidad utilizada"), max_length=8, choices=Modality.choices, blank=True)
    status = models.CharField(
        _("estado"), max_length=16, choices=EncounterStatus.choices, default=EncounterStatus.PLANNED
    )
    origin_establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="+")
    # The remote establishment of a teleinterconsulta (the consultant's); empty otherwise.
    consulted_establishment = models.ForeignKey(
        Establishment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["patient", "-started_at"], name="records_encounter_timeline")]
        constraints = [
            # One encounter per appointment: starting twice (two participants joining) finds the same row.
            models.UniqueConstraint(
                fields=["appointment_ref"], condition=~Q(appointment_ref=""), name="records_encounter_one_per_appt"
            ),
            models.CheckConstraint(
                condition=Q(service_type__in=ServiceType.values), name="records_encounter_service_valid"
            ),
            models.CheckConstraint(
                condition=Q(modality_planned__in=Modality.values), name="records_encounter_modality_valid"
            ),
            models.CheckConstraint(
                condition=Q(modality_used="") | Q(modality_used__in=Modality.values),
                name="records_encounter_modality_used_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=EncounterStatus.values), name="records_encounter_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(started_at__isnull=False, ended_at__gte=models.F("started_at")),
                name="records_encounter_period",
            ),
        ]

    def __str__(self) -> str:
        return f"encounter #{self.pk} of patient #{self.patient_id} ({self.status})"


class EncounterParticipant(models.Model):
    """A practitioner taking part in an encounter, with their registry data as it was at the time
    (a later change of profile must not rewrite who signed what)."""

    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, related_name="participants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(_("rol"), max_length=16, choices=ParticipantRole.choices)
    # Their establishment (with its RENIPRESS code through the key); the origin when not given.
    establishment = models.ForeignKey(Establishment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    full_name = models.CharField(max_length=200)
    profession = models.CharField(max_length=32)
    registry_body = models.CharField(max_length=8)
    registry_number = models.CharField(max_length=10)
    rne = models.CharField(max_length=10, blank=True)
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["encounter", "user"], name="records_participant_once"),
            models.CheckConstraint(condition=Q(role__in=ParticipantRole.values), name="records_participant_role_valid"),
        ]

    def __str__(self) -> str:
        return f"participant user #{self.user_id} in encounter #{self.encounter_id}"


class EncounterModalityChange(models.Model):
    """The modality in use from `changed_at` on (video dropped to audio, then to chat...). Append-only."""

    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, related_name="modality_changes")
    modality = models.CharField(max_length=8, choices=Modality.choices)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["changed_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(modality__in=Modality.values), name="records_modality_change_valid"),
        ]

    def __str__(self) -> str:
        return f"modality {self.modality} in encounter #{self.encounter_id}"


class NoteTemplate(models.Model):
    """Section defaults per specialty, managed by the clinic admin. Holds no patient data."""

    specialty = models.CharField(_("especialidad"), max_length=120)
    name = models.CharField(_("nombre"), max_length=120)
    content = models.JSONField(_("contenido"), default=dict)
    is_active = models.BooleanField(_("activa"), default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["specialty", "name"]
        constraints = [
            models.UniqueConstraint(fields=["specialty", "name"], name="records_note_template_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.specialty}: {self.name}"


class NoteStatus(models.TextChoices):
    DRAFT = "draft", _("Borrador")
    SIGNED = "signed", _("Firmada")


class ClinicalNote(models.Model):
    """A practitioner's note of an encounter: a draft saved as versions, then signed and locked.

    `content` is the JSON document described by records.notes.NOTE_SECTIONS, encrypted as a whole.
    """

    encounter = models.ForeignKey(Encounter, on_delete=models.PROTECT, related_name="notes")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="clinical_notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    template = models.ForeignKey(NoteTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=8, choices=NoteStatus.choices, default=NoteStatus.DRAFT)
    content = EncryptedTextField(purpose="records.note.content")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    signed_at = models.DateTimeField(null=True, blank=True)
    signed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    content_sha256 = models.CharField(max_length=64, blank=True)
    signature = models.BinaryField(null=True, blank=True)
    signature_algorithm = models.CharField(max_length=32, blank=True)
    certificate_pem = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One note per author per encounter: opening the editor twice resumes the same draft.
            models.UniqueConstraint(fields=["encounter", "author"], name="records_note_one_per_author"),
            models.CheckConstraint(condition=Q(status__in=NoteStatus.values), name="records_note_status_valid"),
            models.CheckConstraint(
                condition=Q(status=NoteStatus.DRAFT)
                | Q(
                    signed_at__isnull=False,
                    signed_by__isnull=False,
                    signature__isnull=False,
                    content_sha256__regex=r"^[0-9a-f]{64}$",
                ),
                name="records_note_signed_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"note #{self.pk} of encounter #{self.encounter_id} ({self.status})"

    @property
    def is_signed(self) -> bool:
        return self.status == NoteStatus.SIGNED


class NoteRevision(models.Model):
    """Every saved version of a draft (autosave included), kept encrypted and never changed."""

    note = models.ForeignKey(ClinicalNote, on_delete=models.PROTECT, related_name="revisions")
    version = models.PositiveIntegerField()
    content = EncryptedTextField(purpose="records.note_revision.content")
    saved_at = models.DateTimeField(default=timezone.now)
    saved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["note", "version"]
        constraints = [models.UniqueConstraint(fields=["note", "version"], name="records_note_revision_unique")]

    def __str__(self) -> str:
        return f"revision {self.version} of note #{self.note_id}"


class NoteAmendment(models.Model):
    """A correction of a signed note: linked to it, with its reason, author, time and its own signature."""

    note = models.ForeignKey(ClinicalNote, on_delete=models.PROTECT, related_name="amendments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # The author's registry data at the time (part of what is signed; a later profile change must not alter it).
    author_name = models.CharField(max_length=200)
    author_profession = models.CharField(max_length=32)
    author_registry_body = models.CharField(max_length=8)
    author_registry_number = models.CharField(max_length=10)
    author_rne = models.CharField(max_length=10, blank=True)
    reason = EncryptedTextField(purpose="records.note_amendment.reason")
    text = EncryptedTextField(purpose="records.note_amendment.text")
    created_at = models.DateTimeField(default=timezone.now)
    content_sha256 = models.CharField(max_length=64)
    signature = models.BinaryField()
    signature_algorithm = models.CharField(max_length=32)
    certificate_pem = models.TextField()

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"amendment #{self.pk} of note #{self.note_id}"


class KeySource(models.TextChoices):
    GENERATED = "generated", _("Generada por la clínica")
    PKCS12 = "pkcs12", _("Certificado importado (PKCS#12)")


class PractitionerKey(models.Model):
    """A practitioner's signing key pair. The private key is encrypted at rest under the data keys."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signing_keys")
    algorithm = models.CharField(max_length=32)
    public_key_pem = models.TextField()
    private_key_pem = EncryptedTextField(purpose="records.practitioner_key.private")
    certificate_pem = models.TextField()
    # Intermediate certificates up to the issuer (PEM blocks, concatenated), for PAdES chains.
    chain_pem = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=KeySource.choices)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=Q(revoked_at__isnull=True), name="records_practitioner_key_one_active"
            ),
            models.CheckConstraint(condition=Q(source__in=KeySource.values), name="records_practitioner_key_source"),
        ]

    def __str__(self) -> str:
        return f"signing key #{self.pk} of user #{self.user_id} ({self.source})"


class SigningAuthority(models.Model):
    """This installation's own certification authority, created on first use, issuing practitioners'
    self-managed certificates. One row (the constant `name`)."""

    name = models.CharField(max_length=32, unique=True, default="clinic")
    private_key_pem = EncryptedTextField(purpose="records.signing_authority.private")
    certificate_pem = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"signing authority {self.name}"
