"""The note editor: the NTS sections as a form (also what autosave posts), autosave, CIE-10 search, templates and
prescription alerts with their acknowledgement."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import AccessDenied, role_required
from accounts.models import Role
from records import cie10, medications
from records.access import note_for
from records.medications import Alert
from records.models import (
    ClinicalNote,
    EncounterParticipant,
    NoteStatus,
    NoteTemplate,
    PrescriptionAlertAcknowledgement,
)
from records.notes import (
    DIAGNOSIS_TYPES,
    NOTE_SECTIONS,
    PRESCRIPTION,
    Flag,
    Group,
    Items,
    Number,
    note_content,
    note_save_draft,
)
from records.signals import encounter_page_sections
from records.views.clinical._common import (
    cie10_title,
    errors_of,
    first_message,
    header_context,
    render_in_zone,
    search_language,
    template_from,
    user_of,
)

PRESCRIPTION_KEYS = tuple(PRESCRIPTION.fields)


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


def alert_views(note: ClinicalNote, content: dict[str, Any]) -> list[AlertView]:
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
                "title": cie10_title(code) if code else "",
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
    if user_id is None:  # every participant names a user
        return None
    return EncounterParticipant.objects.filter(encounter_id=note.encounter_id, user_id=user_id).first()


def _note_context(
    request: HttpRequest,
    note: ClinicalNote,
    *,
    content: dict[str, Any] | None = None,
    errors: dict[str, list[str]] | None = None,
    form_error: str = "",
) -> dict[str, Any]:
    user = user_of(request)
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
        **header_context(note.patient),
    }
    if editable:
        context["alerts"] = alert_views(note, saved)
        context["templates"] = list(NoteTemplate.objects.filter(is_active=True).order_by("specialty", "name"))
        query = request.GET.get("cie10", "").strip()[:100]
        if query:
            context["cie10_query"] = query
            context["cie10_results"] = cie10.search(query, language=search_language())
    if note.status == NoteStatus.SIGNED:
        context["signer"] = _participant_of(note, note.signed_by_id)
        context["amendments"] = list(note.amendments.order_by("created_at", "pk"))
    # What other apps keep of this encounter (its visit's recordings), each behind its own gate and audit.
    sections = encounter_page_sections.send(sender=ClinicalNote, request=request, user=user, encounter=note.encounter)
    context["encounter_sections"] = [html for _receiver, html in sections if html]
    return context


@role_required(Role.PRACTITIONER)
@require_http_methods(["GET", "POST"])
def note_page(request: HttpRequest, note_id: int) -> HttpResponse:
    """The note: the editor for its author while it is a draft, else the note as written (signed: locked, with
    its signature and amendments). A POST is the editor's Save (and "Save and sign") without JavaScript."""
    user = user_of(request)
    if request.method == "GET":
        note = note_for(user, note_id)
        return render_in_zone(request, "records/note.html", _note_context(request, note))
    note = note_for(user, note_id, to_edit=True)
    if note.status == NoteStatus.SIGNED:
        context = _note_context(
            request, note, form_error=_("La nota está firmada y ya no se puede modificar; registre una enmienda.")
        )
        return render_in_zone(request, "records/note.html", context, status=400)
    content = content_from_form(request.POST)
    try:
        version = int(request.POST.get("version", ""))
    except ValueError:
        version = -1
    try:
        note_save_draft(note=note, content=content, by=user, expected_version=version)
    except ValidationError as error:
        by_field, general = errors_of(error)
        if not by_field and not general:
            general = _("Revise los datos de la nota.")
        context = _note_context(request, note, content=content, errors=by_field, form_error=general)
        status = 409 if getattr(error, "code", "") == "stale_version" else 400
        return render_in_zone(request, "records/note.html", context, status=status)
    if request.POST.get("action") == "sign":
        return redirect("records:note_sign", note_id=note.pk)
    messages.success(request, _("Borrador guardado."))
    return redirect("records:note", note_id=note.pk)


@role_required(Role.PRACTITIONER)
@require_POST
def note_autosave(request: HttpRequest, note_id: int) -> JsonResponse:
    """The editor's autosave (every few seconds and on leaving the page): JSON in and out, the same fields as the
    form. A stale version is a conflict (409): another tab saved meanwhile and its text is not overwritten."""
    user = user_of(request)
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
        by_field, general = errors_of(error)
        status = 409 if code in ("stale_version", "signed") else 400
        message = general or _("No se guardó: revise los campos marcados.")
        return JsonResponse({"error": message, "code": code or "invalid", "errors": by_field}, status=status)
    alerts = [
        {"message": view.alert.message, "severity": view.alert.severity, "acknowledged": view.acknowledged}
        for view in alert_views(saved, note_content(saved))
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
    results = cie10.search(query, language=search_language(), limit=15) if len(query) >= 2 else []
    english = search_language() == "en"
    return JsonResponse(
        {"results": [{"code": e.code, "title": e.title_en if english else e.title_es} for e in results]}
    )


@role_required(Role.PRACTITIONER)
@require_POST
def alert_acknowledge(request: HttpRequest, note_id: int) -> HttpResponse:
    """The prescriber goes ahead despite an alert, with a reason. The alert is looked up again from the saved
    draft, so only an alert the server raised can be acknowledged."""
    user = user_of(request)
    note = note_for(user, note_id, to_edit=True)
    if note.status != NoteStatus.DRAFT:
        raise AccessDenied
    prescription_id, key = request.POST.get("prescription_id", ""), request.POST.get("alert_key", "")
    match = next(
        (
            v
            for v in alert_views(note, note_content(note))
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
        context["ack_error"] = {"key": key, "prescription_id": prescription_id, "message": first_message(error)}
        return render_in_zone(request, "records/note.html", context, status=400)
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
    user = user_of(request)
    note = note_for(user, note_id, to_edit=True)
    template = template_from(request)
    try:
        if note.status != NoteStatus.DRAFT:
            raise ValidationError(_("La nota está firmada y ya no se puede modificar; registre una enmienda."))
        if template is None:
            raise ValidationError(_("Elija una plantilla."))
        version = int(request.POST.get("version", "") or -1)
        content = _fill_empty(note_content(note), template.content)
        note_save_draft(note=note, content=content, by=user, expected_version=version)
    except (ValidationError, ValueError) as error:
        message = first_message(error) if isinstance(error, ValidationError) else _("Versión no válida.")
        return render_in_zone(
            request, "records/note.html", _note_context(request, note, form_error=message), status=400
        )
    messages.success(request, _("Plantilla aplicada a las secciones vacías."))
    return redirect("records:note", note_id=note.pk)
