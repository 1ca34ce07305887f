"""Practitioner pages of the encounter record: the chart (header, timeline, consents), the note editor with
autosave, CIE-10 search and prescription alerts, signing, amendments and the signed PDF.

Thin views: parse → gate (records.access) → service (records.encounters, notes, signing, medications) → render.
URLs carry database ids only; a search text is sent in a query string to a JSON endpoint that names no patient.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import AccessDenied, reauth_required, reauthenticated_recently, role_required
from accounts.models import Establishment, Role, User
from records import cie10, medications
from records.access import chart_for, encounter_for, note_for
from records.encounters import encounter_unscheduled
from records.medications import Alert
from records.models import (
    AllergySeverity,
    ClinicalNote,
    Encounter,
    EncounterParticipant,
    EncounterStatus,
    MedicationSource,
    Modality,
    NoteStatus,
    NoteTemplate,
    Patient,
    PrescriptionAlertAcknowledgement,
    ServiceType,
)
from records.notes import (
    DIAGNOSIS_TYPES,
    NOTE_SECTIONS,
    PRESCRIPTION,
    Flag,
    Group,
    Items,
    Number,
    missing_sections_for_signing,
    note_content,
    note_create,
    note_save_draft,
)
from records.printable import encounter_pdf_for_download
from records.signing import amendment_add, note_sign
from records.views.patients import _profile_context

TIMELINE_PAGE_SIZE = 20
PRESCRIPTION_KEYS = tuple(PRESCRIPTION.fields)


def _user(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]


def _establishments(user: User):  # type: ignore[no-untyped-def]
    return Establishment.objects.filter(memberships__user=user, is_active=True).distinct().order_by("name")


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    """Render with times in the practitioner's own zone (the server keeps UTC): a clinician in Lima reads
    encounter and signature times as they lived them."""
    zone_name = getattr(request.user, "time_zone", "") or settings.DEFAULT_ESTABLISHMENT_TIME_ZONE
    try:
        zone = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo(settings.DEFAULT_ESTABLISHMENT_TIME_ZONE)
    with timezone.override(zone):
        return render(request, template, context, status=status)


def _first_message(error: ValidationError) -> str:
    return error.messages[0] if error.messages else _("Datos no válidos.")


# --- the chart header and the chart page --------------------------------------------------------------


def _header_context(patient: Patient) -> dict[str, Any]:
    """What every chart page shows on top: active allergies, problems and current medication (three queries)."""
    header = medications.chart_header(patient)
    for problem in header.problems:
        problem.title = _cie10_title(problem.cie10_code)  # type: ignore[attr-defined]
    return {"header": header}


def _cie10_title(code: str) -> str:
    entry = cie10.lookup(code)
    if entry is None:
        return ""
    return entry.title_en if (get_language() or "").startswith("en") else entry.title_es


@dataclass
class TimelineNote:
    id: int
    author_id: int
    author_name: str
    status: str
    signed_at: dt.datetime | None
    amendments: int


@dataclass
class TimelineEntry:
    id: int
    started_at: dt.datetime | None
    service_type: str
    modality_planned: str
    modality_used: str
    status: str
    scheduled: bool
    origin: str
    consulted: str
    participants: list[dict[str, Any]] = field(default_factory=list)
    notes: list[TimelineNote] = field(default_factory=list)

    def takes_part(self, user_id: int) -> bool:
        return any(p["user_id"] == user_id for p in self.participants)

    def note_of(self, user_id: int) -> TimelineNote | None:
        return next((n for n in self.notes if n.author_id == user_id), None)


def encounter_timeline(patient: Patient, page_number: str | None):  # type: ignore[no-untyped-def]
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
    page = Paginator(rows, TIMELINE_PAGE_SIZE).get_page(page_number)
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
    user = _user(request)
    patient = access.patient
    context = _profile_context(user, patient)
    page = encounter_timeline(patient, request.GET.get("page"))
    for entry in page.object_list:
        entry.own_note = entry.note_of(user.pk)  # type: ignore[attr-defined]
        entry.user_takes_part = entry.takes_part(user.pk)  # type: ignore[attr-defined]
    context.update(
        _header_context(patient),
        access=access,
        emergency=access.via == "break_glass",
        timeline=page,
        templates=list(NoteTemplate.objects.filter(is_active=True).order_by("specialty", "name")),
        establishments=list(_establishments(user)),
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
    access = chart_for(_user(request), patient_id)
    return _render(request, "records/patient_chart.html", _chart_context(request, access))


def _chart_with_errors(request: HttpRequest, access: Any, which: str, error: ValidationError) -> HttpResponse:
    errors = error.message_dict if hasattr(error, "error_dict") else {"__all__": error.messages}
    forms = AddForms(which=which, values={k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"})
    forms.errors = {key: list(value) for key, value in errors.items()}
    messages.error(request, _("Revise los datos del formulario."))
    return _render(request, "records/patient_chart.html", _chart_context(request, access, forms), status=400)


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
    user = _user(request)
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
    user = _user(request)
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
    user = _user(request)
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


def _template_from(request: HttpRequest) -> NoteTemplate | None:
    raw = request.POST.get("template", "")
    if not raw.isdigit():
        return None
    return NoteTemplate.objects.filter(pk=int(raw), is_active=True).first()


@role_required(Role.PRACTITIONER)
@require_POST
def encounter_unscheduled_start(request: HttpRequest, patient_id: int) -> HttpResponse:
    """A contact without appointment (the patient phoned): start its encounter and open the note."""
    user = _user(request)
    access = chart_for(user, patient_id)
    raw = request.POST.get("establishment", "")
    establishment = _establishments(user).filter(pk=int(raw)).first() if raw.isdigit() and len(raw) < 18 else None
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
        note = note_create(encounter=encounter, author=user, template=_template_from(request))
    except ValidationError as error:
        return _chart_with_errors(request, access, "encounter", error)
    messages.success(request, _("Atención iniciada."))
    return redirect("records:note", note_id=note.pk)


@role_required(Role.PRACTITIONER)
@require_POST
def note_open(request: HttpRequest, encounter_id: int) -> HttpResponse:
    """Open (or create) the practitioner's own note of an encounter they take part in."""
    user = _user(request)
    encounter = encounter_for(user, encounter_id)
    try:
        note = note_create(encounter=encounter, author=user, template=_template_from(request))
    except ValidationError as error:
        messages.error(request, _first_message(error))
        return redirect("records:patient_chart", patient_id=encounter.patient_id)
    return redirect("records:note", note_id=note.pk)


# --- the note editor ------------------------------------------------------------------------------------


def _number(value: str) -> Any:
    """A number typed in a form ("38,2" too); what is not a number goes through as text so that the note's
    validation names the field."""
    text = value.strip().replace(",", ".")
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in text else number


def _rows(data: QueryDict, prefix: str, keys: tuple[str, ...]) -> list[dict[str, str]]:
    indexes = sorted(
        {int(name.split(".")[1]) for name in data if name.startswith(prefix + ".") and name.split(".")[1].isdigit()}
    )
    return [{key: data.get(f"{prefix}.{index}.{key}", "") for key in keys} for index in indexes[:100]]


def content_from_form(data: QueryDict) -> dict[str, Any]:
    """The note content from the editor's fields, named by their path in the content ("anamnesis.story",
    "diagnoses.0.code"). Empty diagnosis and prescription rows are dropped; the rest is checked by
    records.notes.validate_content when saved."""

    def group(spec: Group, prefix: str) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, item in spec.fields.items():
            name = f"{prefix}{key}"
            if isinstance(item, Group):
                result[key] = group(item, name + ".")
            elif isinstance(item, Flag):
                result[key] = data.get(name) in ("on", "true", "1")
            elif isinstance(item, Number):
                result[key] = _number(data.get(name, ""))
            elif isinstance(item, Items):
                continue
            else:
                result[key] = data.get(name, "")
        return result

    content = group(Group(NOTE_SECTIONS["reason"].label, NOTE_SECTIONS), "")
    diagnoses = [row for row in _rows(data, "diagnoses", ("code", "type")) if row["code"].strip()]
    content["diagnoses"] = diagnoses
    prescriptions = []
    for row in _rows(data, "prescriptions", PRESCRIPTION_KEYS):
        if not any(row[key].strip() for key in PRESCRIPTION_KEYS if key != "id"):
            continue
        # A complete prescription is normalised by the medications module ("500 mg" → dose 500, unit mg);
        # an incomplete one is kept as typed: a draft may be half-written, signing lists what is missing.
        with contextlib.suppress(ValidationError):
            row = medications.prescription_validate(row)
        prescriptions.append(row)
    content["prescriptions"] = prescriptions
    return content


@dataclass
class FieldView:
    name: str
    label: str
    value: Any
    errors: list[str]
    kind: str  # "text", "textarea", "number", "flag"

    @property
    def id(self) -> str:
        return "note-" + self.name.replace(".", "-")


def _field_views(content: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, FieldView]:
    """Every scalar field of the note by its path with "__" for "." (templates cannot index dotted keys)."""
    views: dict[str, FieldView] = {}

    def walk(spec: Group, value: dict[str, Any], prefix: str) -> None:
        for key, item in spec.fields.items():
            name = f"{prefix}{key}"
            if isinstance(item, Group):
                walk(item, value.get(key) or {}, name + ".")
                continue
            if isinstance(item, Items):
                continue
            if isinstance(item, Flag):
                kind = "flag"
            elif isinstance(item, Number):
                kind = "number"
            else:
                kind = "textarea" if item.max_length > 200 else "text"
            current = value.get(key)
            views[name.replace(".", "__")] = FieldView(
                name, str(item.label), "" if current is None else current, errors.get(name, []), kind
            )

    walk(Group(NOTE_SECTIONS["reason"].label, NOTE_SECTIONS), content, "")
    return views


@dataclass
class AlertView:
    prescription_id: str
    alert: Alert
    acknowledged: bool


def _alert_views(note: ClinicalNote, content: dict[str, Any]) -> list[AlertView]:
    """The alerts of the draft's prescriptions (as last saved), each marked acknowledged or not."""
    prescriptions = [p for p in content.get("prescriptions", []) if str(p.get("drug", "")).strip()]
    if not prescriptions:
        return []
    acknowledged = set(
        PrescriptionAlertAcknowledgement.objects.filter(note_id=note.pk).values_list("kind", "alert_key")
    )
    views = []
    for prescription in prescriptions:
        others = [p for p in prescriptions if p is not prescription]
        for alert in medications.prescription_alerts(
            patient=note.patient, prescription=prescription, other_prescriptions=others
        ):
            views.append(
                AlertView(str(prescription.get("id", "")), alert, (alert.kind, alert.key[:200]) in acknowledged)
            )
    return views


def _diagnosis_rows(content: dict[str, Any], errors: dict[str, list[str]], blank: int) -> list[dict[str, Any]]:
    rows = []
    for index, diagnosis in enumerate([*content.get("diagnoses", []), *({"code": "", "type": ""},) * blank]):
        code = str(diagnosis.get("code", ""))
        rows.append(
            {
                "index": index,
                "code_id": f"diagnosis-{index}-code",
                "code": code,
                "type": diagnosis.get("type") or "presumptive",
                "title": _cie10_title(code) if code else "",
                "code_errors": errors.get(f"diagnoses.{index}.code", []),
                "type_errors": errors.get(f"diagnoses.{index}.type", []),
            }
        )
    return rows


def _prescription_rows(content: dict[str, Any], errors: dict[str, list[str]], blank: int) -> list[dict[str, Any]]:
    rows = []
    empty = {key: "" for key in PRESCRIPTION_KEYS}
    for index, item in enumerate([*content.get("prescriptions", []), *(dict(empty) for _row in range(blank))]):
        # A new row gets its id now, so that autosaves keep one id per prescription (acknowledgements refer to it).
        item_id = str(item.get("id") or uuid.uuid4())
        fields = [
            FieldView(
                f"prescriptions.{index}.{key}",
                str(PRESCRIPTION.fields[key].label),
                item.get(key, ""),
                errors.get(f"prescriptions.{index}.{key}", []),
                "textarea" if key == "instructions" else "text",
            )
            for key in PRESCRIPTION_KEYS
            if key != "id"
        ]
        rows.append({"index": index, "id": item_id, "fields": fields, "drug": item.get("drug", "")})
    return rows


def _participant_of(note: ClinicalNote, user_id: int | None) -> EncounterParticipant | None:
    return EncounterParticipant.objects.filter(encounter_id=note.encounter_id, user_id=user_id).first()


def _note_context(
    request: HttpRequest,
    note: ClinicalNote,
    *,
    content: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
    form_error: str = "",
) -> dict[str, Any]:
    user = _user(request)
    saved = note_content(note)
    shown = content if content is not None else saved
    errors = errors or {}
    editable = note.status == NoteStatus.DRAFT and note.author_id == user.pk
    context: dict[str, Any] = {
        "note": note,
        "encounter": note.encounter,
        "patient": note.patient,
        "editable": editable,
        "content": shown,
        "fields": _field_views(shown, errors),
        "diagnosis_rows": _diagnosis_rows(shown, errors, blank=1 if editable else 0),
        "diagnosis_types": [(key, str(label)) for key, label in DIAGNOSIS_TYPES.items()],
        "prescription_rows": _prescription_rows(shown, errors, blank=1 if editable else 0),
        "form_error": form_error,
        "has_errors": bool(errors) or bool(form_error),
        "cie10_query": "",
        "cie10_results": None,
        **_header_context(note.patient),
    }
    if editable:
        context["alerts"] = _alert_views(note, saved)
        context["templates"] = list(NoteTemplate.objects.filter(is_active=True).order_by("specialty", "name"))
        query = request.GET.get("cie10", "").strip()[:100]
        if query:
            context["cie10_query"] = query
            context["cie10_results"] = cie10.search(query, language=_search_language())
    if note.status == NoteStatus.SIGNED:
        context["signer"] = _participant_of(note, note.signed_by_id)
        context["amendments"] = list(note.amendments.order_by("created_at", "pk"))
    return context


def _search_language() -> str:
    return "en" if (get_language() or "").startswith("en") else "es-pe"


def _errors_of(error: ValidationError) -> tuple[dict[str, list[str]], str]:
    if hasattr(error, "error_dict"):
        by_field = {key: list(value) for key, value in error.message_dict.items()}
        return by_field, ""
    return {}, _first_message(error)


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET", "POST"])
def note_page(request: HttpRequest, note_id: int) -> HttpResponse:
    """The note: the editor for its author while it is a draft, else the note as written (signed: locked, with
    its signature and amendments). A POST is the editor's Save (and "Save and sign") without JavaScript."""
    user = _user(request)
    if request.method == "GET":
        note = note_for(user, note_id)
        return _render(request, "records/note.html", _note_context(request, note))
    note = note_for(user, note_id, to_edit=True)
    if note.status == NoteStatus.SIGNED:
        context = _note_context(
            request, note, form_error=_("La nota está firmada y ya no se puede modificar; registre una enmienda.")
        )
        return _render(request, "records/note.html", context, status=400)
    content = content_from_form(request.POST)
    try:
        version = int(request.POST.get("version", ""))
    except ValueError:
        version = -1
    try:
        note_save_draft(note=note, content=content, by=user, expected_version=version)
    except ValidationError as error:
        by_field, general = _errors_of(error)
        if not by_field and not general:
            general = _("Revise los datos de la nota.")
        context = _note_context(request, note, content=content, errors=by_field, form_error=general)
        status = 409 if getattr(error, "code", "") == "stale_version" else 400
        return _render(request, "records/note.html", context, status=status)
    if request.POST.get("action") == "sign":
        return redirect("records:note_sign", note_id=note.pk)
    messages.success(request, _("Borrador guardado."))
    return redirect("records:note", note_id=note.pk)


@role_required(Role.PRACTITIONER)
@require_POST
def note_autosave(request: HttpRequest, note_id: int) -> JsonResponse:
    """The editor's autosave (every few seconds and on leaving the page): JSON in and out, the same fields as the
    form. A stale version is a conflict (409): another tab saved meanwhile and its text is not overwritten."""
    user = _user(request)
    note = note_for(user, note_id, to_edit=True)
    try:
        version = int(request.POST.get("version", ""))
    except ValueError:
        return JsonResponse({"error": _("Versión no válida.")}, status=400)
    content = content_from_form(request.POST)
    try:
        saved = note_save_draft(note=note, content=content, by=user, expected_version=version)
    except ValidationError as error:
        code = getattr(error, "code", "")
        by_field, general = _errors_of(error)
        status = 409 if code in ("stale_version", "signed") else 400
        message = general or _("No se guardó: revise los campos marcados.")
        return JsonResponse({"error": message, "code": code or "invalid", "errors": by_field}, status=status)
    alerts = [
        {"message": view.alert.message, "severity": view.alert.severity, "acknowledged": view.acknowledged}
        for view in _alert_views(saved, note_content(saved))
    ]
    return JsonResponse(
        {"version": saved.version, "saved_at": saved.updated_at.isoformat(), "alerts": alerts, "ids": _ids(saved)}
    )


def _ids(note: ClinicalNote) -> list[str]:
    return [str(p.get("id", "")) for p in note_content(note).get("prescriptions", [])]


@role_required(Role.PRACTITIONER)
@require_GET
def cie10_search(request: HttpRequest) -> JsonResponse:
    """CIE-10 codes by code or words, for the editor's diagnosis fields. The text searched names no patient."""
    query = request.GET.get("q", "").strip()[:100]
    results = cie10.search(query, language=_search_language(), limit=15) if len(query) >= 2 else []
    english = _search_language() == "en"
    return JsonResponse(
        {"results": [{"code": e.code, "title": e.title_en if english else e.title_es} for e in results]}
    )


@role_required(Role.PRACTITIONER)
@require_POST
def alert_acknowledge(request: HttpRequest, note_id: int) -> HttpResponse:
    """The prescriber goes ahead despite an alert, with a reason. The alert is looked up again from the saved
    draft, so only an alert the server raised can be acknowledged."""
    user = _user(request)
    note = note_for(user, note_id, to_edit=True)
    if note.status != NoteStatus.DRAFT:
        raise AccessDenied
    prescription_id, key = request.POST.get("prescription_id", ""), request.POST.get("alert_key", "")
    match = next(
        (
            v
            for v in _alert_views(note, note_content(note))
            if v.prescription_id == prescription_id and v.alert.key == key
        ),
        None,
    )
    try:
        if match is None:
            raise ValidationError(_("La alerta ya no corresponde a la receta guardada; revise la receta."))
        medications.alert_acknowledge(
            patient=note.patient,
            note_id=note.pk,
            prescription_id=prescription_id,
            alert=match.alert,
            reason=request.POST.get("reason", ""),
            by=user,
        )
    except ValidationError as error:
        context = _note_context(request, note)
        context["ack_error"] = {"key": key, "prescription_id": prescription_id, "message": _first_message(error)}
        return _render(request, "records/note.html", context, status=400)
    messages.success(request, _("Alerta confirmada con su motivo."))
    return redirect("records:note", note_id=note.pk)


def _fill_empty(content: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """The draft with the template's text in the sections still empty: applying a template never overwrites
    what the practitioner wrote (nor adds diagnoses or prescriptions: templates carry none)."""
    filled = dict(content)
    for key, value in template.items():
        if isinstance(value, dict) and isinstance(filled.get(key), dict):
            filled[key] = _fill_empty(filled[key], value)
        elif filled.get(key) in ("", None) and value not in ("", None, [], False):
            filled[key] = value
    return filled


@role_required(Role.PRACTITIONER)
@require_POST
def note_apply_template(request: HttpRequest, note_id: int) -> HttpResponse:
    """Pre-fill the empty sections of the author's draft from an active template (admin-managed)."""
    user = _user(request)
    note = note_for(user, note_id, to_edit=True)
    template = _template_from(request)
    try:
        if note.status != NoteStatus.DRAFT:
            raise ValidationError(_("La nota está firmada y ya no se puede modificar; registre una enmienda."))
        if template is None:
            raise ValidationError(_("Elija una plantilla."))
        version = int(request.POST.get("version", "") or -1)
        content = _fill_empty(note_content(note), template.content)
        note_save_draft(note=note, content=content, by=user, expected_version=version)
    except (ValidationError, ValueError) as error:
        message = _first_message(error) if isinstance(error, ValidationError) else _("Versión no válida.")
        return _render(request, "records/note.html", _note_context(request, note, form_error=message), status=400)
    messages.success(request, _("Plantilla aplicada a las secciones vacías."))
    return redirect("records:note", note_id=note.pk)


def _sign_context(request: HttpRequest, note: ClinicalNote) -> dict[str, Any]:
    content = note_content(note)
    return {
        "note": note,
        "patient": note.patient,
        "encounter": note.encounter,
        "missing": missing_sections_for_signing(content),
        "pending_alerts": [v for v in _alert_views(note, content) if not v.acknowledged],
        **_header_context(note.patient),
    }


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET", "POST"])
@reauth_required
def note_sign_view(request: HttpRequest, note_id: int) -> HttpResponse:
    """Sign the draft: after a fresh second factor; what is missing and the unacknowledged alerts are listed."""
    user = _user(request)
    note = note_for(user, note_id, to_edit=True)
    if note.status == NoteStatus.SIGNED or note.author_id != user.pk:
        messages.error(request, _("La nota ya está firmada."))
        return redirect("records:note", note_id=note.pk)
    context = _sign_context(request, note)
    status = 200
    if request.method == "POST":
        try:
            note_sign(note=note, signer=user, reauthenticated=reauthenticated_recently(request))
        except ValidationError as error:
            context["sign_error"] = _first_message(error)
            status = 400
        else:
            messages.success(request, _("Nota firmada."))
            return redirect("records:note", note_id=note.pk)
    return _render(request, "records/note_sign.html", context, status=status)


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET", "POST"])
@reauth_required
def note_amend(request: HttpRequest, note_id: int) -> HttpResponse:
    """A signed correction of a signed note, after a fresh second factor; the original stays as signed."""
    user = _user(request)
    note = note_for(user, note_id, to_edit=True)
    if note.status != NoteStatus.SIGNED:
        return redirect("records:note", note_id=note.pk)
    context: dict[str, Any] = {
        "note": note,
        "patient": note.patient,
        "encounter": note.encounter,
        "values": {},
        "errors": {},
        **_header_context(note.patient),
    }
    status = 200
    if request.method == "POST":
        context["values"] = {"reason": request.POST.get("reason", ""), "text": request.POST.get("text", "")}
        try:
            amendment_add(
                note=note,
                author=user,
                reason=context["values"]["reason"],
                text=context["values"]["text"],
                reauthenticated=reauthenticated_recently(request),
            )
        except ValidationError as error:
            context["errors"], context["form_error"] = _errors_of(error)
            status = 400
        else:
            messages.success(request, _("Enmienda firmada y registrada."))
            return redirect("records:note", note_id=note.pk)
    return _render(request, "records/note_amend.html", context, status=status)


@role_required(Role.PRACTITIONER)
@require_GET
def note_pdf(request: HttpRequest, note_id: int) -> HttpResponse:
    """The signed PDF of a signed note (audited by the service). The file name carries the note's number and
    date, never the patient's name."""
    content = encounter_pdf_for_download(user=_user(request), note_id=note_id)
    note_date = ClinicalNote.objects.filter(pk=note_id).values_list("signed_at", flat=True).first()
    day = timezone.localdate(note_date) if note_date else timezone.localdate()
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="atencion-{note_id}-{day:%Y%m%d}.pdf"'
    response["Cache-Control"] = "no-store"
    return response
