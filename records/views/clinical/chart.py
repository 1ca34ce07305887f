"""The chart page: header (allergies, problems, medication), the encounter timeline, identification and consents,
and the forms that add to the lists or start an encounter without appointment."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import role_required
from accounts.models import Role
from records import medications
from records.access import chart_for, encounter_for
from records.encounters import encounter_unscheduled
from records.models import (
    AllergySeverity,
    ClinicalNote,
    Encounter,
    EncounterParticipant,
    EncounterStatus,
    MedicationSource,
    Modality,
    NoteTemplate,
    Patient,
    ServiceType,
)
from records.notes import (
    note_create,
)
from records.views.clinical._common import (
    establishments_of,
    first_message,
    header_context,
    render_in_zone,
    template_from,
    user_of,
)
from records.views.patients import _profile_context

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

TIMELINE_PAGE_SIZE = 20


@dataclass
class TimelineNote:
    id: int
    author_id: int
    author_name: str
    status: str
    signed_at: dt.datetime | None
    amendments: int


class TimelineParticipant(TypedDict):
    encounter_id: int
    user_id: int
    full_name: str
    registry_body: str
    registry_number: str


@dataclass
class TimelineEntry:
    id: int
    started_at: dt.datetime | None
    # Display labels, translated when the page renders.
    service_type: _StrOrPromise
    modality_planned: _StrOrPromise
    modality_used: _StrOrPromise
    status: str
    scheduled: bool
    origin: str
    consulted: str
    participants: list[TimelineParticipant] = field(default_factory=list)
    notes: list[TimelineNote] = field(default_factory=list)
    # For the viewing practitioner: their own note of it, and whether they take part (may write one).
    own_note: TimelineNote | None = None
    user_takes_part: bool = False

    def takes_part(self, user_id: int) -> bool:
        return any(p["user_id"] == user_id for p in self.participants)

    def note_of(self, user_id: int) -> TimelineNote | None:
        return next((n for n in self.notes if n.author_id == user_id), None)


def encounter_timeline(patient: Patient, page_number: str | None) -> Page[TimelineEntry]:
    """One page of the patient's encounters, newest first, with their notes (status, signature date, number of
    amendments) and participants: four queries whatever the number of encounters. Plain rows rather than model
    instances: the chart is the most opened page, and no note text is loaded (it is decrypted when opened)."""
    rows = (
        Encounter.objects.filter(patient=patient)
        .order_by("-started_at", "-pk")
        .values(
            "id",
            "started_at",
            "service_type",
            "modality_planned",
            "modality_used",
            "status",
            "appointment_ref",
            "origin_establishment__name",
            "consulted_establishment__name",
        )
    )
    # Paged as plain rows, then the page holds the entries built from them (object_list is replaced below).
    page: Page[Any] = Paginator(rows, TIMELINE_PAGE_SIZE).get_page(page_number)
    entries = {
        row["id"]: TimelineEntry(
            id=row["id"],
            started_at=row["started_at"],
            service_type=ServiceType(row["service_type"]).label,
            modality_planned=Modality(row["modality_planned"]).label,
            modality_used=Modality(row["modality_used"]).label if row["modality_used"] else "",
            status=row["status"],
            scheduled=bool(row["appointment_ref"]),
            origin=row["origin_establishment__name"],
            consulted=row["consulted_establishment__name"] or "",
        )
        for row in page.object_list
    }
    notes = (
        ClinicalNote.objects.filter(encounter_id__in=list(entries))
        .order_by("created_at", "pk")
        .values("id", "encounter_id", "author_id", "author__full_name", "status", "signed_at")
        .annotate(amendment_count=Count("amendments"))
    )
    for note in notes:
        entries[note["encounter_id"]].notes.append(
            TimelineNote(
                id=note["id"],
                author_id=note["author_id"],
                author_name=note["author__full_name"],
                status=note["status"],
                signed_at=note["signed_at"],
                amendments=note["amendment_count"],
            )
        )
    participants = (
        EncounterParticipant.objects.filter(encounter_id__in=list(entries))
        .order_by("joined_at", "pk")
        .values("encounter_id", "user_id", "full_name", "registry_body", "registry_number")
    )
    for participant in participants:
        entries[participant["encounter_id"]].participants.append(participant)
    page.object_list = list(entries.values())
    return page


@dataclass
class AddForms:
    """The allergy, problem and medication forms of the chart page, with the values and errors of a refused post."""

    which: str = ""
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


def _chart_context(request: HttpRequest, access: Any, add_forms: AddForms | None = None) -> dict[str, Any]:
    user = user_of(request)
    patient = access.patient
    context = _profile_context(user, patient)
    page = encounter_timeline(patient, request.GET.get("page"))
    for entry in page.object_list:
        entry.own_note = entry.note_of(user.pk)
        entry.user_takes_part = entry.takes_part(user.pk)
    context.update(
        header_context(patient),
        access=access,
        emergency=access.via == "break_glass",
        timeline=page,
        templates=list(NoteTemplate.objects.filter(is_active=True).order_by("specialty", "name")),
        establishments=list(establishments_of(user)),
        service_types=ServiceType.choices,
        encounter_statuses=EncounterStatus.choices,
        modalities=Modality.choices,
        severities=AllergySeverity.choices,
        medication_sources=MedicationSource.choices,
        add_forms=add_forms or AddForms(),
    )
    return context


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET"])
def patient_chart(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The chart: header (allergies, problems, medication), identification, consents, and the encounters."""
    access = chart_for(user_of(request), patient_id)
    return render_in_zone(request, "records/patient_chart.html", _chart_context(request, access))


def _chart_with_errors(request: HttpRequest, access: Any, which: str, error: ValidationError) -> HttpResponse:
    errors = error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages}
    values = {k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken" and isinstance(v, str)}
    forms = AddForms(which=which, values=values)
    forms.errors = {key: list(value) for key, value in errors.items()}
    messages.error(request, _("Revise los datos del formulario."))
    return render_in_zone(request, "records/patient_chart.html", _chart_context(request, access, forms), status=400)


def _date_or_none(value: str, field_name: str) -> dt.date | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError({field_name: [_("Escriba una fecha válida.")]}, code="invalid_date") from None


@role_required(Role.PRACTITIONER)
@require_POST
def allergy_add(request: HttpRequest, patient_id: int) -> HttpResponse:
    user = user_of(request)
    access = chart_for(user, patient_id)
    try:
        medications.allergy_record(
            patient=access.patient,
            substance=request.POST.get("substance", ""),
            reaction=request.POST.get("reaction", ""),
            severity=request.POST.get("severity", ""),
            recorded_by=user,
        )
    except ValidationError as error:
        return _chart_with_errors(request, access, "allergy", error)
    messages.success(request, _("Alergia registrada."))
    return redirect("records:patient_chart", patient_id=patient_id)


@role_required(Role.PRACTITIONER)
@require_POST
def problem_add(request: HttpRequest, patient_id: int) -> HttpResponse:
    user = user_of(request)
    access = chart_for(user, patient_id)
    try:
        medications.problem_record(
            patient=access.patient,
            cie10_code=request.POST.get("cie10_code", ""),
            description=request.POST.get("description", ""),
            onset_date=_date_or_none(request.POST.get("onset_date", ""), "onset_date"),
            recorded_by=user,
        )
    except ValidationError as error:
        return _chart_with_errors(request, access, "problem", error)
    messages.success(request, _("Problema registrado."))
    return redirect("records:patient_chart", patient_id=patient_id)


@role_required(Role.PRACTITIONER)
@require_POST
def medication_add(request: HttpRequest, patient_id: int) -> HttpResponse:
    user = user_of(request)
    access = chart_for(user, patient_id)
    try:
        medications.medication_record(
            patient=access.patient,
            drug_name=request.POST.get("drug_name", ""),
            dose=request.POST.get("dose", ""),
            source=request.POST.get("source", ""),
            started_on=_date_or_none(request.POST.get("started_on", ""), "started_on"),
            recorded_by=user,
        )
    except ValidationError as error:
        return _chart_with_errors(request, access, "medication", error)
    messages.success(request, _("Medicación registrada."))
    return redirect("records:patient_chart", patient_id=patient_id)


@role_required(Role.PRACTITIONER)
@require_POST
def encounter_unscheduled_start(request: HttpRequest, patient_id: int) -> HttpResponse:
    """A contact without appointment (the patient phoned): start its encounter and open the note."""
    user = user_of(request)
    access = chart_for(user, patient_id)
    raw = request.POST.get("establishment", "")
    establishment = establishments_of(user).filter(pk=int(raw)).first() if raw.isdigit() and len(raw) < 18 else None
    try:
        if establishment is None:
            raise ValidationError({"establishment": [_("Elija el establecimiento desde el que atiende.")]})
        encounter = encounter_unscheduled(
            patient=access.patient,
            by=user,
            origin_establishment=establishment,
            service_type=request.POST.get("service_type", ""),
            modality=request.POST.get("modality", ""),
        )
        note = note_create(encounter=encounter, author=user, template=template_from(request))
    except ValidationError as error:
        return _chart_with_errors(request, access, "encounter", error)
    messages.success(request, _("Atención iniciada."))
    return redirect("records:note", note_id=note.pk)


@role_required(Role.PRACTITIONER)
@require_POST
def note_open(request: HttpRequest, encounter_id: int) -> HttpResponse:
    """Open (or create) the practitioner's own note of an encounter they take part in."""
    user = user_of(request)
    encounter = encounter_for(user, encounter_id)
    try:
        note = note_create(encounter=encounter, author=user, template=template_from(request))
    except ValidationError as error:
        messages.error(request, first_message(error))
        return redirect("records:patient_chart", patient_id=encounter.patient_id)
    return redirect("records:note", note_id=note.pk)
