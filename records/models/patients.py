"""Patients and their identifiers (PAT-1, PAT-2); identifiers and contact data are encrypted at rest (SEC-3)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Establishment
from teleconsult.fields import EncryptedTextField


class Sex(models.TextChoices):
    FEMALE = "female", _("Femenino")
    MALE = "male", _("Masculino")
    INTERSEX = "intersex", _("Intersexual")
    UNKNOWN = "unknown", _("No registrado")


class Insurance(models.TextChoices):
    SIS = "sis", _("SIS")
    ESSALUD = "essalud", _("EsSalud")
    PRIVATE = "private", _("Seguro privado (EPS)")
    ARMED_FORCES = "ffaa_pnp", _("Sanidad FF.AA. / PNP")
    NONE = "none", _("Sin seguro")


class Patient(models.Model):
    """A person who receives care. May exist without a login (`user` is optional).

    Names and birth date stay in clear so staff can search by name prefix and flag possible
    duplicates; identifiers, contact data and representatives' details are encrypted.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="patient"
    )
    given_names = models.CharField(_("nombres"), max_length=120)
    paternal_surname = models.CharField(_("apellido paterno"), max_length=80)
    maternal_surname = models.CharField(_("apellido materno"), max_length=80, blank=True)
    # Upper-case, accent-free "SURNAME SURNAME GIVEN" for prefix search and duplicate detection.
    search_name = models.CharField(max_length=300, editable=False)
    sex = models.CharField(_("sexo"), max_length=16, choices=Sex.choices)
    birth_date = models.DateField(_("fecha de nacimiento"))
    address = EncryptedTextField(_("dirección"), purpose="records.patient.address", null=True, blank=True)
    phone = EncryptedTextField(_("teléfono"), purpose="records.patient.phone", null=True, blank=True)
    email = EncryptedTextField(_("correo electrónico"), purpose="records.patient.email", null=True, blank=True)
    insurance = models.CharField(_("seguro"), max_length=16, choices=Insurance.choices, default=Insurance.NONE)
    insurance_number = EncryptedTextField(
        _("número de afiliación"), purpose="records.patient.insurance_number", null=True, blank=True
    )
    emergency_contact_name = EncryptedTextField(
        _("contacto de emergencia"), purpose="records.patient.emergency_contact_name", null=True, blank=True
    )
    emergency_contact_phone = EncryptedTextField(
        _("teléfono de emergencia"), purpose="records.patient.emergency_contact_phone", null=True, blank=True
    )
    preferred_language = models.CharField(max_length=8, default="es-pe")
    # Retention (SEC-5): the record is kept at least CLINICAL_RETENTION_YEARS after the last encounter.
    last_encounter_at = models.DateTimeField(null=True, blank=True)
    # Set when a cancellation request is granted inside the retention period: hidden from routine use,
    # kept for legal purposes until retention ends (and no legal hold applies).
    blocked_at = models.DateTimeField(null=True, blank=True)
    anonymised_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["search_name", "birth_date"], name="records_patient_dup_check"),
            # Pattern ops so `LIKE 'PREFIX%'` (name search by prefix) uses the index whatever the collation.
            models.Index(fields=["search_name"], name="records_patient_name_prefix", opclasses=["varchar_pattern_ops"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(sex__in=Sex.values), name="records_patient_sex_valid"),
        ]

    def __str__(self) -> str:
        # Never the name: model reprs end up in logs and error reports.
        return f"patient #{self.pk}"


class DocumentType(models.TextChoices):
    DNI = "dni", _("DNI")
    FOREIGNER_CARD = "ce", _("Carné de extranjería")
    PASSPORT = "passport", _("Pasaporte")


class PatientIdentifier(models.Model):
    """One identity document of a patient. The blind index makes each document belong to one patient only."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="identifiers")
    document_type = models.CharField(_("tipo de documento"), max_length=16, choices=DocumentType.choices)
    # ISO 3166-1 alpha-3 issuing country: PER for DNI and carné de extranjería, the issuer for passports.
    issuing_country = models.CharField(_("país emisor"), max_length=3, default="PER")
    value = EncryptedTextField(_("número de documento"), purpose="records.patientidentifier.value")
    # HMAC over (type, country, normalised number): exact search without the plaintext in the database.
    lookup = models.BinaryField(max_length=32, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["lookup"], name="records_identifier_one_patient"),
            models.UniqueConstraint(fields=["patient", "document_type"], name="records_identifier_one_per_type"),
            models.CheckConstraint(
                condition=Q(document_type__in=DocumentType.values), name="records_identifier_type_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_type} of patient #{self.patient_id}"


class ClinicalHistoryNumber(models.Model):
    """The clinical history number an establishment gives a patient (one per patient per establishment)."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="history_numbers")
    establishment = models.ForeignKey(Establishment, on_delete=models.PROTECT, related_name="history_numbers")
    number = models.CharField(_("número de historia clínica"), max_length=20)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["establishment", "number"], name="records_history_number_unique"),
            models.UniqueConstraint(fields=["patient", "establishment"], name="records_history_one_per_site"),
        ]

    def __str__(self) -> str:
        return f"history {self.number} at establishment #{self.establishment_id}"


class DuplicateStatus(models.TextChoices):
    OPEN = "open", _("Por revisar")
    DISTINCT = "distinct", _("Son personas distintas")
    SAME_PERSON = "same_person", _("Es la misma persona")


class PossibleDuplicate(models.Model):
    """Two patients with the same normalised name and birth date but different documents.

    Flagged to staff and resolved by a person; records are never merged automatically.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    other = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=DuplicateStatus.choices, default=DuplicateStatus.OPEN)
    flagged_at = models.DateTimeField(default=timezone.now, editable=False)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Stored with the lower id first, so a pair is flagged once whichever was registered later.
            models.CheckConstraint(condition=Q(patient__lt=models.F("other")), name="records_duplicate_ordered"),
            models.UniqueConstraint(fields=["patient", "other"], name="records_duplicate_pair_unique"),
        ]

    def __str__(self) -> str:
        return f"possible duplicate #{self.patient_id}/#{self.other_id} ({self.status})"


class LegalHold(models.Model):
    """A hold placed by the clinic (litigation, investigation): nothing about the patient is purged while open."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="legal_holds")
    reason = EncryptedTextField(purpose="records.legalhold.reason")
    placed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    placed_at = models.DateTimeField(default=timezone.now)
    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"legal hold #{self.pk} on patient #{self.patient_id}"


class PatientRevision(models.Model):
    """The values a demographic rectification replaced (SEC-4): kept, encrypted, never edited.

    `previous_values` is a JSON object of field name → old value (dates as ISO text), encrypted as a
    whole because it holds contact data and identifiers of the person.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="revisions")
    changed_fields = models.JSONField(default=list)
    previous_values = EncryptedTextField(purpose="records.patientrevision.previous_values")
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    rights_request = models.ForeignKey(
        "records.DataRightsRequest", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-changed_at", "-pk"]

    def __str__(self) -> str:
        return f"revision #{self.pk} of patient #{self.patient_id}"


class RepresentativeRelationship(models.TextChoices):
    MOTHER = "mother", _("Madre")
    FATHER = "father", _("Padre")
    GUARDIAN = "guardian", _("Tutor(a) legal")
    CURATOR = "curator", _("Curador(a) de una persona adulta dependiente")
    OTHER = "other", _("Otro representante legal")


class LegalRepresentative(models.Model):
    """Who may consent for a minor or a dependent adult (PAT-2). Name, document and phone are encrypted."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="legal_representatives")
    name = EncryptedTextField(_("nombre completo"), purpose="records.legalrepresentative.name")
    document_type = models.CharField(_("tipo de documento"), max_length=16, choices=DocumentType.choices)
    document_number = EncryptedTextField(_("número de documento"), purpose="records.legalrepresentative.document")
    relationship = models.CharField(_("relación"), max_length=16, choices=RepresentativeRelationship.choices)
    phone = EncryptedTextField(_("teléfono"), purpose="records.legalrepresentative.phone", null=True, blank=True)
    valid_from = models.DateField(_("vigente desde"), default=timezone.localdate)
    valid_until = models.DateField(_("vigente hasta"), null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-valid_from", "-pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(document_type__in=DocumentType.values), name="records_representative_doc_type_valid"
            ),
            models.CheckConstraint(
                condition=Q(relationship__in=RepresentativeRelationship.values),
                name="records_representative_relationship_valid",
            ),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gte=models.F("valid_from")),
                name="records_representative_valid_range",
            ),
        ]

    def __str__(self) -> str:
        # Never the name: model reprs end up in logs and error reports.
        return f"legal representative #{self.pk} of patient #{self.patient_id}"
