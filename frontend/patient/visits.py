"""My visits (EHR patient side, mobile-first): finished encounters, their signed notes in plain words with
amendments, my prescriptions, and the signed PDF of a visit. Patients read only their own signed notes."""

from __future__ import annotations

import json
import zoneinfo
from dataclasses import dataclass
from typing import Any

from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.access import request_user
from accounts.models import Profession
from audit import services as audit
from audit.actions import AuditAction, Purpose
from frontend.patient.common import patient_page
from records import cie10
from records.access import chart_for, note_for
from records.models import (
    ClinicalNote,
    Encounter,
    EncounterParticipant,
    EncounterStatus,
    Modality,
    NoteAmendment,
    NoteStatus,
    ParticipantRole,
    Patient,
    ServiceType,
)
from records.notes import DIAGNOSIS_TYPES, VITAL_SIGNS

# Section labels in the patient's words (the editor's labels are the norm's, for clinicians).
ANAMNESIS_LABELS = {
    "illness_duration": _("Tiempo de enfermedad"),
    "onset": _("Cómo empezó"),
    "course": _("Cómo fue cambiando"),
    "story": _("Lo que usted contó"),
}
HISTORY_LABEL = _("Antecedentes")
PLAN_LABEL = _("Plan: exámenes, interconsultas y referencias")
# The sections after the prescription, in the norm's order.
CLOSING_SECTIONS = (
    ("treatment", _("Tratamiento")),
    ("indications", _("Indicaciones para usted")),
    ("next_appointment", _("Próxima cita")),
)


@dataclass(frozen=True)
class Professional:
    full_name: str
    profession: str
    registry: str  # "CMP 012345"
    rne: str


def _professional(participant: EncounterParticipant) -> Professional:
    profession = Profession(participant.profession).label if participant.profession in Profession.values else ""
    return Professional(
        full_name=participant.full_name,
        profession=str(profession),
        registry=f"{participant.registry_body} {participant.registry_number}".strip(),
        rne=participant.rne,
    )


def _modality(encounter: Encounter) -> str:
    return str(Modality(encounter.modality_used or encounter.modality_planned).label)


def _attending(participants: list[EncounterParticipant]) -> EncounterParticipant | None:
    ordered = sorted(participants, key=lambda p: (p.role != ParticipantRole.ATTENDING, p.joined_at, p.pk))
    return ordered[0] if ordered else None


def _signer(encounter: Encounter, note: ClinicalNote) -> Professional | None:
    """Who signed the note, from the participant snapshot taken at the time of the visit."""
    participants = list(encounter.participants.all())
    for participant in participants:
        if participant.user_id == note.signed_by_id:
            return _professional(participant)
    attending = _attending(participants)
    return _professional(attending) if attending else None


def _signed_notes() -> Prefetch:
    # Only the columns the list shows: the encrypted content stays unread (and undecrypted) here.
    return Prefetch(
        "notes",
        queryset=ClinicalNote.objects.filter(status=NoteStatus.SIGNED)
        .only("pk", "encounter_id", "signed_at", "signed_by_id")
        .order_by("signed_at", "pk"),
        to_attr="signed_notes",
    )


@never_cache
@patient_page
@require_GET
def my_visits(request: HttpRequest, patient: Patient) -> HttpResponse:
    user = request_user(request)
    chart_for(user, patient.pk)  # the gate: audits the read of my own record
    encounters = list(
        Encounter.objects.filter(patient=patient, status=EncounterStatus.FINISHED)
        .select_related("origin_establishment")
        .prefetch_related("participants", _signed_notes())
        .order_by("-started_at", "-pk")
    )
    visits = []
    for encounter in encounters:
        participants = list(encounter.participants.all())
        by_user = {p.user_id: p for p in participants}
        attending = _attending(participants)
        visits.append(
            {
                "encounter": encounter,
                "zone": encounter.origin_establishment.time_zone,
                "service": ServiceType(encounter.service_type).label,
                "modality": _modality(encounter),
                "professional": _professional(attending) if attending else None,
                "notes": [
                    {
                        "note": note,
                        "signer": _professional(by_user[note.signed_by_id]) if note.signed_by_id in by_user else None,
                    }
                    for note in encounter.signed_notes  # type: ignore[attr-defined]
                ],
            }
        )
    return render(request, "frontend/patient/visits.html", {"visits": visits})


def _diagnoses(content: dict[str, Any]) -> list[dict[str, str]]:
    english = (get_language() or "").startswith("en")
    rows = []
    for diagnosis in content.get("diagnoses") or []:
        entry = cie10.lookup(diagnosis.get("code", ""))
        title = (entry.title_en if english else entry.title_es) if entry else ""
        rows.append(
            {
                "code": diagnosis.get("code", ""),
                "title": title,
                "type": str(DIAGNOSIS_TYPES.get(diagnosis.get("type", ""), "")),
            }
        )
    return rows


def _vital_signs(examination: dict[str, Any]) -> list[tuple[str, Any]]:
    vitals = examination.get("vital_signs") or {}
    return [
        (str(spec.label), vitals[key])
        for key, spec in VITAL_SIGNS.fields.items()
        if vitals.get(key) is not None and vitals.get(key) != ""
    ]


def _prescriptions(content: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "drug": " ".join(part for part in (item.get("drug", ""), item.get("concentration", "")) if part),
            "form": item.get("form", ""),
            "dose": " ".join(part for part in (item.get("dose", ""), item.get("dose_unit", "")) if part),
            "route": item.get("route", ""),
            "frequency": item.get("frequency", ""),
            "duration": item.get("duration", ""),
            "quantity": item.get("quantity", ""),
            "instructions": item.get("instructions", ""),
        }
        for item in content.get("prescriptions") or []
    ]


def readable_note(content: dict[str, Any]) -> dict[str, Any]:
    """A signed note's content laid out for the patient: labelled sections, empty ones left out."""
    anamnesis = content.get("anamnesis") or {}
    examination = content.get("examination") or {}
    return {
        "reason": content.get("reason", ""),
        "anamnesis": [(label, anamnesis.get(key, "")) for key, label in ANAMNESIS_LABELS.items() if anamnesis.get(key)],
        "examination": examination.get("text", ""),
        "vital_signs": _vital_signs(examination),
        "patient_reported": bool(examination.get("patient_reported")),
        "diagnoses": _diagnoses(content),
        "prescriptions": _prescriptions(content),
        "history": content.get("history", ""),
        "plan": content.get("plan", ""),
        "closing": [(label, content.get(key, "")) for key, label in CLOSING_SECTIONS if content.get(key)],
    }


@never_cache
@patient_page
@require_GET
def visit_note(request: HttpRequest, patient: Patient, note_id: int) -> HttpResponse:
    # The gate: only my own signed notes; anything else is the same 404 (and a denied-access audit event).
    note = note_for(request_user(request), note_id)
    encounter = (
        Encounter.objects.select_related("origin_establishment", "consulted_establishment")
        .prefetch_related("participants")
        .get(pk=note.encounter_id)
    )
    amendments = list(
        NoteAmendment.objects.filter(note=note)
        .only("pk", "created_at", "author_name", "author_registry_body", "author_registry_number", "reason", "text")
        .order_by("created_at", "pk")
    )
    context = {
        "note": note,
        "encounter": encounter,
        "zone": encounter.origin_establishment.time_zone,
        "service": ServiceType(encounter.service_type).label,
        "modality": _modality(encounter),
        "signer": _signer(encounter, note),
        "content": readable_note(json.loads(note.content)),
        "history_label": HISTORY_LABEL,
        "plan_label": PLAN_LABEL,
        "amendments": amendments,
    }
    return render(request, "frontend/patient/visit_note.html", context)


@never_cache
@patient_page
@require_GET
def my_prescriptions(request: HttpRequest, patient: Patient) -> HttpResponse:
    user = request_user(request)
    chart_for(user, patient.pk)
    notes = list(
        ClinicalNote.objects.filter(patient=patient, status=NoteStatus.SIGNED)
        .select_related("encounter__origin_establishment")
        .prefetch_related("encounter__participants")
        .order_by("-signed_at", "-pk")
    )
    # The page decrypts every signed note's content: one audit event names the notes read (ids only).
    audit.record(
        action=AuditAction.NOTE_VIEWED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=user.pk,
        actor_role=user.role,
        patient_id=patient.pk,
        object_type="note",
        details={"via": "self", "page": "prescriptions", "notes": [note.pk for note in notes][:200]},
    )
    rows = []
    for note in notes:
        prescriptions = _prescriptions(json.loads(note.content))
        if prescriptions:
            rows.append(
                {
                    "note": note,
                    "zone": note.encounter.origin_establishment.time_zone,
                    "signer": _signer(note.encounter, note),
                    "prescriptions": prescriptions,
                }
            )
    return render(request, "frontend/patient/prescriptions.html", {"rows": rows})


@never_cache
@patient_page
@require_GET
def visit_note_pdf(request: HttpRequest, patient: Patient, note_id: int) -> HttpResponse:
    """The signed PDF of one of my visits; records.printable gates (my own signed note) and audits the download."""
    # Imported here: pyHanko and fpdf take most of a second to load, paid by the first download rather than by
    # every process start (a restarted server is back sooner).
    from records.printable import encounter_pdf_for_download

    content = encounter_pdf_for_download(user=request_user(request), note_id=note_id)
    note = (
        ClinicalNote.objects.select_related("encounter__origin_establishment")
        .only(
            "signed_at",
            "encounter__started_at",
            "encounter__origin_establishment__time_zone",
        )
        .get(pk=note_id)
    )
    zone = zoneinfo.ZoneInfo(note.encounter.origin_establishment.time_zone)
    day = timezone.localdate(note.encounter.started_at or note.signed_at, zone)
    response = HttpResponse(content, content_type="application/pdf")
    # A name without the patient's name or identifiers: it lands in download lists and shared folders.
    response["Content-Disposition"] = f'attachment; filename="atencion-{day:%Y-%m-%d}.pdf"'
    response["Cache-Control"] = "no-store"
    return response
