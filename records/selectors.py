"""Reads for patients: exact search by document (through the blind index) and search by name prefix."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from records.identifiers import document_lookup, normalise_document
from records.models import Patient
from records.services import search_name


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
