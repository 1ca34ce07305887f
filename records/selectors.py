"""Reads for patients: exact search by document (through the blind index) and search by name prefix."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from records.identifiers import document_lookup, normalise_document
from records.models import Patient
from records.services import search_name

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise


def patient_by_document(document_type: str, number: str, issuing_country: str = "PER") -> Patient | None:
    """Exact match on an identity document; the database compares HMACs, never plaintext."""
    normalised, country = normalise_document(document_type, number, issuing_country)
    return (
        Patient.objects.filter(identifiers__lookup=document_lookup(document_type, normalised, country))
        .distinct()
        .first()
    )


def patients_by_name_prefix(text: str, *, limit: int = 50) -> QuerySet[Patient]:
    """Patients whose normalised "SURNAME SURNAME GIVEN NAMES" starts with the text typed."""
    prefix = search_name(text)
    if len(prefix) < 2:
        return Patient.objects.none()
    return Patient.objects.filter(search_name__startswith=prefix, blocked_at__isnull=True).order_by(
        "search_name", "pk"
    )[:limit]


@dataclass(frozen=True)
class AccessLogEntry:
    at: dt.datetime
    who: str
    role: str
    what: str
    purpose: str
    outcome: str


# Plain words for the patient ("who opened my record", AUD-3); codes not listed fall back to a generic phrase.
_ACTION_WORDS = {
    "records.chart.viewed": _("abrió su historia clínica"),
    "records.chart.denied": _("intentó abrir su historia clínica y no se le permitió"),
    "records.chart.break_glass": _("abrió su historia clínica por una emergencia"),
    "records.patient.viewed": _("vio sus datos personales"),
    "records.patient.registered": _("lo registró como paciente"),
    "records.patient.exported": _("descargó una copia de sus datos"),
    "records.consent.granted": _("registró que usted otorgó un consentimiento"),
    "records.consent.revoked": _("registró que usted revocó un consentimiento"),
    "records.care_relationship.started": _("lo incluyó en el equipo que lo atiende"),
    "records.care_relationship.ended": _("terminó una relación de atención"),
    "records.rights_request.filed": _("registró una solicitud de derechos"),
    "records.rights_request.extended": _("prorrogó su solicitud de derechos"),
    "records.rights_request.resolved": _("respondió su solicitud de derechos"),
    "records.encounter.started": _("inició una atención"),
    "records.encounter.finished": _("cerró una atención"),
    "records.encounter.viewed": _("consultó una atención"),
    "records.note.created": _("abrió una nota clínica"),
    "records.note.draft_saved": _("guardó un borrador de nota clínica"),
    "records.note.viewed": _("leyó una nota clínica"),
    "records.note.signed": _("firmó una nota clínica"),
    "records.note.amended": _("añadió una corrección a una nota clínica"),
    "records.note.pdf_downloaded": _("descargó la copia firmada de una atención"),
    "records.allergy.recorded": _("registró una alergia"),
    "records.problem.recorded": _("registró un problema de salud"),
    "records.medication.recorded": _("registró una medicación"),
    "records.prescription_alert.acknowledged": _("confirmó una alerta de prescripción"),
    "scheduling.appointment.booked": _("reservó una cita"),
    "scheduling.appointment.viewed": _("consultó una cita"),
    "scheduling.appointment.cancelled": _("canceló una cita"),
    "scheduling.appointment.rescheduled": _("reprogramó una cita"),
}
_PURPOSE_WORDS = {
    "treatment": _("atención de salud"),
    "emergency": _("emergencia"),
    "patient_request": _("a su pedido"),
    "operations": _("gestión"),
}


def record_access_log(patient: Patient, *, limit: int = 200) -> list[AccessLogEntry]:
    """Who touched this patient's record, newest first, in plain words, with names of staff (two queries)."""
    from django.contrib.auth import get_user_model

    from accounts.models import Role
    from audit.models import AuditEvent

    events = list(AuditEvent.objects.filter(patient_id=patient.pk).order_by("-occurred_at", "-id")[:limit])
    users = get_user_model().objects.in_bulk({e.actor_user_id for e in events if e.actor_user_id})
    roles = dict(Role.choices)
    entries = []
    for event in events:
        user = users.get(event.actor_user_id)
        who: _StrOrPromise
        if user is None:
            who = _("El sistema")
        elif user.pk == patient.user_id:
            who = _("Usted")
        else:
            who = user.full_name
        entries.append(
            AccessLogEntry(
                at=event.occurred_at,
                who=str(who),
                role=str(roles.get(event.actor_role, "")),
                what=str(_ACTION_WORDS.get(event.action, _("realizó una acción en su registro"))),
                purpose=str(_PURPOSE_WORDS.get(event.purpose, "")),
                outcome=event.outcome,
            )
        )
    return entries


def _search_results(found: QuerySet[Patient], viewer: User, limit: int) -> list[Patient]:
    """Search results with what the list shows, in one query. Blocked records are out of routine use.
    For a practitioner each row says whether they are in the patient's care now (the link then opens the
    chart; otherwise it offers emergency access). Only clear columns: a result list decrypts nothing."""
    from django.db.models import BooleanField, Exists, OuterRef, Value
    from django.utils import timezone

    from accounts.models import Role
    from records.models import CareRelationship

    if viewer.role == Role.PRACTITIONER:
        now = timezone.now()
        in_care: Exists | Value = Exists(
            CareRelationship.objects.filter(
                patient=OuterRef("pk"),
                practitioner=viewer,
                valid_from__lte=now,
                valid_until__gt=now,
                ended_at__isnull=True,
            )
        )
    else:
        in_care = Value(False, output_field=BooleanField())
    return list(
        found.filter(blocked_at__isnull=True)
        .annotate(in_care=in_care)
        .only("pk", "given_names", "paternal_surname", "maternal_surname", "birth_date", "sex")
        .order_by("search_name", "pk")[:limit]
    )


def patient_search_by_document(document_type: str, number: str, issuing_country: str, *, viewer: User) -> list[Patient]:
    """The (at most one) patient holding this document, for the staff search page."""
    normalised, country = normalise_document(document_type, number, issuing_country)
    lookup = document_lookup(document_type, normalised, country)
    return _search_results(Patient.objects.filter(identifiers__lookup=lookup), viewer, 1)


def patient_search_by_name(text: str, *, viewer: User, limit: int = 50) -> list[Patient]:
    """Patients whose "SURNAME SURNAME GIVEN NAMES" starts with the text typed, for the staff search page."""
    prefix = search_name(text)
    if len(prefix) < 2:
        return []
    return _search_results(Patient.objects.filter(search_name__startswith=prefix), viewer, limit)


@dataclass(frozen=True)
class PatientProfile:
    patient: Patient
    identifiers: list
    history_numbers: list
    duplicates: list  # (PossibleDuplicate, the other Patient)
    revisions: list


def patient_profile(patient: Patient) -> PatientProfile:
    """Everything the staff profile shows besides consent (records.consent.consent_states), in four queries."""
    from django.db.models import Q

    from records.models import ClinicalHistoryNumber, PatientIdentifier, PatientRevision, PossibleDuplicate

    identifiers = list(PatientIdentifier.objects.filter(patient=patient).order_by("document_type"))
    history = list(ClinicalHistoryNumber.objects.filter(patient=patient).select_related("establishment").order_by("pk"))
    flags = list(
        PossibleDuplicate.objects.filter(Q(patient=patient) | Q(other=patient))
        .select_related("patient", "other")
        .order_by("flagged_at", "pk")
    )
    duplicates = [(flag, flag.other if flag.patient_id == patient.pk else flag.patient) for flag in flags]
    revisions = list(PatientRevision.objects.filter(patient=patient).defer("previous_values")[:20])
    return PatientProfile(patient, identifiers, history, duplicates, revisions)
