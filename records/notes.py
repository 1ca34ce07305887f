"""The clinical note (EHR-2, EHR-3): its sections per NTS 139-MINSA, strict validation, drafts with versions, templates.

A note's content is one JSON document, encrypted as a whole:

    {"reason": str,
     "anamnesis": {"illness_duration": str, "onset": str, "course": str, "story": str},
     "history": str,
     "examination": {"text": str,
                     "vital_signs": {"temperature_c": num|null, "heart_rate": int|null, "respiratory_rate": int|null,
                                     "systolic": int|null, "diastolic": int|null, "spo2": int|null,
                                     "weight_kg": num|null, "height_cm": num|null},
                     "patient_reported": bool},
     "diagnoses": [{"code": "J06.9", "type": "presumptive"|"definitive"|"repeat"}],
     "plan": str,
     "prescriptions": [{"id": uuid str, "drug": str, "concentration": str, "form": str, "dose": str,
                        "dose_unit": str, "route": str, "frequency": str, "duration": str, "quantity": str,
                        "instructions": str}],
     "treatment": str, "indications": str, "next_appointment": str}

Identification comes from the patient's record, not from the note.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records.models import (
    ClinicalNote,
    Encounter,
    EncounterStatus,
    NoteRevision,
    NoteStatus,
    NoteTemplate,
)

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise

SHORT_TEXT = 200
LONG_TEXT = 10_000
MAX_DIAGNOSES = 20
MAX_PRESCRIPTIONS = 30


@dataclass(frozen=True)
class Text:
    label: _StrPromise
    max_length: int = LONG_TEXT


@dataclass(frozen=True)
class Number:
    label: _StrPromise
    minimum: float
    maximum: float
    integer: bool = False


@dataclass(frozen=True)
class Flag:
    label: _StrPromise


@dataclass(frozen=True)
class Group:
    label: _StrPromise
    fields: dict[str, Any]


@dataclass(frozen=True)
class Items:
    label: _StrPromise
    item: Group
    max_items: int


DIAGNOSIS_TYPES = {
    "presumptive": gettext_lazy("Presuntivo"),
    "definitive": gettext_lazy("Definitivo"),
    "repeat": gettext_lazy("Repetido"),
}

VITAL_SIGNS = Group(
    gettext_lazy("Signos vitales"),
    {
        "temperature_c": Number(gettext_lazy("Temperatura (°C)"), 30, 45),
        "heart_rate": Number(gettext_lazy("Frecuencia cardiaca (lpm)"), 20, 250, integer=True),
        "respiratory_rate": Number(gettext_lazy("Frecuencia respiratoria (rpm)"), 4, 80, integer=True),
        "systolic": Number(gettext_lazy("Presión arterial sistólica (mmHg)"), 50, 260, integer=True),
        "diastolic": Number(gettext_lazy("Presión arterial diastólica (mmHg)"), 20, 160, integer=True),
        "spo2": Number(gettext_lazy("Saturación de oxígeno (%)"), 50, 100, integer=True),
        "weight_kg": Number(gettext_lazy("Peso (kg)"), 0.3, 400),
        "height_cm": Number(gettext_lazy("Talla (cm)"), 20, 250),
    },
)

PRESCRIPTION = Group(
    gettext_lazy("Medicamento"),
    {
        "id": Text(gettext_lazy("Identificador"), 36),
        "drug": Text(gettext_lazy("Medicamento (DCI)"), SHORT_TEXT),
        "concentration": Text(gettext_lazy("Concentración"), 100),
        "form": Text(gettext_lazy("Forma farmacéutica"), 100),
        "dose": Text(gettext_lazy("Dosis"), 50),
        "dose_unit": Text(gettext_lazy("Unidad de la dosis"), 30),
        "route": Text(gettext_lazy("Vía de administración"), 50),
        "frequency": Text(gettext_lazy("Frecuencia"), 100),
        "duration": Text(gettext_lazy("Duración"), 100),
        "quantity": Text(gettext_lazy("Cantidad"), 50),
        "instructions": Text(gettext_lazy("Indicaciones de uso"), 1000),
    },
)

DIAGNOSIS = Group(
    gettext_lazy("Diagnóstico"),
    {
        "code": Text(gettext_lazy("Código CIE-10"), 8),
        "type": Text(gettext_lazy("Tipo de diagnóstico"), 12),
    },
)

# The sections in the norm's order, with their labels (shown in the editor and in "missing sections" messages).
NOTE_SECTIONS: dict[str, Any] = {
    "reason": Text(gettext_lazy("Motivo de consulta"), 2000),
    "anamnesis": Group(
        gettext_lazy("Anamnesis"),
        {
            "illness_duration": Text(gettext_lazy("Tiempo de enfermedad"), SHORT_TEXT),
            "onset": Text(gettext_lazy("Forma de inicio"), SHORT_TEXT),
            "course": Text(gettext_lazy("Curso"), SHORT_TEXT),
            "story": Text(gettext_lazy("Relato de la enfermedad")),
        },
    ),
    "history": Text(gettext_lazy("Antecedentes relevantes")),
    "examination": Group(
        gettext_lazy("Examen clínico"),
        {
            "text": Text(gettext_lazy("Examen clínico")),
            "vital_signs": VITAL_SIGNS,
            "patient_reported": Flag(gettext_lazy("Signos vitales tomados por el paciente en casa")),
        },
    ),
    "diagnoses": Items(gettext_lazy("Diagnósticos (CIE-10)"), DIAGNOSIS, MAX_DIAGNOSES),
    "plan": Text(gettext_lazy("Plan de trabajo (exámenes, interconsultas, referencias)")),
    "prescriptions": Items(gettext_lazy("Receta"), PRESCRIPTION, MAX_PRESCRIPTIONS),
    "treatment": Text(gettext_lazy("Tratamiento")),
    "indications": Text(gettext_lazy("Indicaciones para el paciente")),
    "next_appointment": Text(gettext_lazy("Próxima cita"), SHORT_TEXT),
}

CIE10_SHAPE = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")


def _empty(spec: Any) -> Any:
    if isinstance(spec, Group):
        return {key: _empty(field) for key, field in spec.fields.items()}
    if isinstance(spec, Items):
        return []
    if isinstance(spec, Flag):
        return False
    if isinstance(spec, Number):
        return None
    return ""


def empty_content() -> dict[str, Any]:
    return {key: _empty(spec) for key, spec in NOTE_SECTIONS.items()}


class _Errors:
    def __init__(self) -> None:
        self.by_field: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        self.by_field.setdefault(path, []).append(message)


def _clean(spec: Any, value: Any, path: str, errors: _Errors) -> Any:
    """The value checked against its spec; missing keys get their empty value (a partial autosave is fine)."""
    label = str(spec.label)
    if isinstance(spec, Group):
        if not isinstance(value, dict):
            errors.add(path, _("«%(label)s» debe ser un grupo de campos.") % {"label": label})
            return _empty(spec)
        for key in value.keys() - spec.fields.keys():
            errors.add(f"{path}.{key}" if path else str(key), _("Campo desconocido."))
        prefix = f"{path}." if path else ""
        return {
            key: _clean(field, value.get(key, _empty(field)), prefix + key, errors)
            for key, field in spec.fields.items()
        }
    if isinstance(spec, Items):
        if not isinstance(value, list):
            errors.add(path, _("«%(label)s» debe ser una lista.") % {"label": label})
            return []
        if len(value) > spec.max_items:
            errors.add(path, _("«%(label)s» admite hasta %(max)d elementos.") % {"label": label, "max": spec.max_items})
            return []
        return [_clean(spec.item, item, f"{path}.{index}", errors) for index, item in enumerate(value)]
    if isinstance(spec, Flag):
        if not isinstance(value, bool):
            errors.add(path, _("«%(label)s» debe ser verdadero o falso.") % {"label": label})
            return False
        return value
    if isinstance(spec, Number):
        if value is None or value == "":
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (spec.integer and not float(value).is_integer())
        ):
            kind = _("un número entero") if spec.integer else _("un número")
            errors.add(path, _("«%(label)s» debe ser %(kind)s.") % {"label": label, "kind": kind})
            return None
        if not spec.minimum <= value <= spec.maximum:
            errors.add(
                path,
                _("«%(label)s» debe estar entre %(min)s y %(max)s.")
                % {"label": label, "min": f"{spec.minimum:g}", "max": f"{spec.maximum:g}"},
            )
            return None
        return int(value) if spec.integer else value
    # Text
    if not isinstance(value, str):
        errors.add(path, _("«%(label)s» debe ser texto.") % {"label": label})
        return ""
    if "\x00" in value:
        errors.add(path, _("«%(label)s» contiene caracteres no válidos.") % {"label": label})
        return ""
    if len(value) > spec.max_length:
        errors.add(
            path,
            _("«%(label)s» admite hasta %(max)d caracteres (tiene %(length)d).")
            % {"label": label, "max": spec.max_length, "length": len(value)},
        )
        return ""
    return value


def _cie10_is_valid(code: str) -> bool:
    try:
        from records import cie10
    except ImportError:
        return bool(CIE10_SHAPE.match(code))
    return cie10.is_valid(code)


def _check_diagnoses(content: dict[str, Any], errors: _Errors) -> None:
    seen: set[str] = set()
    for index, diagnosis in enumerate(content["diagnoses"]):
        path = f"diagnoses.{index}"
        code = diagnosis["code"].strip().upper()
        diagnosis["code"] = code
        if not code:
            errors.add(f"{path}.code", _("Indique el código CIE-10 del diagnóstico."))
        elif not _cie10_is_valid(code):
            errors.add(f"{path}.code", _("El código CIE-10 «%(code)s» no existe.") % {"code": code})
        elif code in seen:
            errors.add(f"{path}.code", _("El diagnóstico «%(code)s» está repetido.") % {"code": code})
        seen.add(code)
        if diagnosis["type"] not in DIAGNOSIS_TYPES:
            errors.add(f"{path}.type", _("Indique si el diagnóstico es presuntivo, definitivo o repetido."))


def _check_vital_signs(content: dict[str, Any], errors: _Errors) -> None:
    vitals = content["examination"]["vital_signs"]
    if vitals["systolic"] is not None and vitals["diastolic"] is not None and vitals["diastolic"] >= vitals["systolic"]:
        errors.add("examination.vital_signs.diastolic", _("La presión diastólica debe ser menor que la sistólica."))


def _check_prescriptions(content: dict[str, Any], errors: _Errors) -> None:
    ids: set[str] = set()
    for index, item in enumerate(content["prescriptions"]):
        path = f"prescriptions.{index}"
        if not item["id"]:
            item["id"] = str(uuid.uuid4())
        else:
            try:
                item["id"] = str(uuid.UUID(item["id"]))
            except ValueError:
                errors.add(f"{path}.id", _("Identificador de medicamento no válido."))
        if item["id"] in ids:
            errors.add(f"{path}.id", _("Identificador de medicamento repetido."))
        ids.add(item["id"])
        if item["dose"].strip() and not item["dose_unit"].strip():
            errors.add(f"{path}.dose_unit", _("Indique la unidad de la dosis (mg, mL, gotas…)."))


def validate_content(content: Any) -> dict[str, Any]:
    """The note content, normalised (every section present, CIE-10 codes upper-case, prescription ids set),
    or ValidationError keyed by the dotted path of each bad field ("examination.vital_signs.spo2")."""
    errors = _Errors()
    if not isinstance(content, dict):
        raise ValidationError(_("El contenido de la nota no tiene el formato esperado."), code="invalid")
    cleaned = _clean(Group(gettext_lazy("Nota"), NOTE_SECTIONS), content, "", errors)
    if not errors.by_field:
        _check_diagnoses(cleaned, errors)
        _check_vital_signs(cleaned, errors)
        _check_prescriptions(cleaned, errors)
    if errors.by_field:
        raise ValidationError(
            {
                field: [ValidationError(message, code="invalid") for message in messages]
                for field, messages in errors.by_field.items()
            }
        )
    return cleaned


PRESCRIPTION_REQUIRED = ("drug", "dose", "dose_unit", "route", "frequency", "duration")


def missing_sections_for_signing(content: dict[str, Any]) -> list[str]:
    """Labels of the sections a note must have before it is signed, in the norm's order."""
    missing: list[str] = []
    if not content.get("reason", "").strip():
        missing.append(str(NOTE_SECTIONS["reason"].label))
    if not content.get("anamnesis", {}).get("story", "").strip():
        missing.append(str(NOTE_SECTIONS["anamnesis"].fields["story"].label))
    if not content.get("examination", {}).get("text", "").strip():
        missing.append(str(NOTE_SECTIONS["examination"].label))
    if not content.get("diagnoses"):
        missing.append(str(NOTE_SECTIONS["diagnoses"].label))
    if not content.get("plan", "").strip():
        missing.append(str(NOTE_SECTIONS["plan"].label))
    for index, item in enumerate(content.get("prescriptions", []), start=1):
        absent = [
            str(PRESCRIPTION.fields[key].label) for key in PRESCRIPTION_REQUIRED if not str(item.get(key, "")).strip()
        ]
        if absent:
            missing.append(
                _("Receta, medicamento %(number)d: %(fields)s") % {"number": index, "fields": ", ".join(absent)}
            )
    return missing


def dump_content(content: dict[str, Any]) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def note_content(note: ClinicalNote) -> dict[str, Any]:
    return json.loads(note.content)


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --- templates (admin-managed) ---


def _require_admin(by: User) -> None:
    if by.role != Role.CLINIC_ADMIN:
        raise ValidationError(_("Solo la administración de la clínica gestiona las plantillas."), code="role")


def _clean_template(specialty: str, name: str, content: Any) -> tuple[str, str, dict[str, Any]]:
    specialty, name = specialty.strip(), name.strip()
    errors: dict[str, str] = {}
    if not specialty or len(specialty) > 120:
        errors["specialty"] = _("Indique la especialidad (hasta 120 caracteres).")
    if not name or len(name) > 120:
        errors["name"] = _("Indique el nombre de la plantilla (hasta 120 caracteres).")
    if errors:
        raise ValidationError(errors)
    cleaned = validate_content(content)
    # A template pre-fills text; it never carries a diagnosis or a prescription of somebody.
    if cleaned["diagnoses"] or cleaned["prescriptions"]:
        raise ValidationError(_("Una plantilla no incluye diagnósticos ni recetas."), code="template_clinical")
    return specialty, name, cleaned


@transaction.atomic
def template_create(*, specialty: str, name: str, content: dict[str, Any], by: User) -> NoteTemplate:
    _require_admin(by)
    specialty, name, cleaned = _clean_template(specialty, name, content)
    if NoteTemplate.objects.filter(specialty=specialty, name=name).exists():
        raise ValidationError({"name": _("Ya existe una plantilla con ese nombre para la especialidad.")})
    template = NoteTemplate.objects.create(specialty=specialty, name=name, content=cleaned)
    audit.record(
        action=AuditAction.NOTE_TEMPLATE_CREATED,
        actor_user_id=by.pk,
        actor_role=by.role,
        object_type="note_template",
        object_id=template.pk,
    )
    return template


@transaction.atomic
def template_update(
    *,
    template: NoteTemplate,
    by: User,
    specialty: str | None = None,
    name: str | None = None,
    content: dict[str, Any] | None = None,
    is_active: bool | None = None,
) -> NoteTemplate:
    _require_admin(by)
    locked = NoteTemplate.objects.select_for_update().get(pk=template.pk)
    specialty, name, cleaned = _clean_template(
        locked.specialty if specialty is None else specialty,
        locked.name if name is None else name,
        locked.content if content is None else content,
    )
    if NoteTemplate.objects.filter(specialty=specialty, name=name).exclude(pk=locked.pk).exists():
        raise ValidationError({"name": _("Ya existe una plantilla con ese nombre para la especialidad.")})
    changed = [
        field
        for field, value in (("specialty", specialty), ("name", name), ("content", cleaned))
        if getattr(locked, field) != value
    ]
    locked.specialty, locked.name, locked.content = specialty, name, cleaned
    if is_active is not None and is_active != locked.is_active:
        locked.is_active = is_active
        changed.append("is_active")
    if changed:
        locked.save()
        audit.record(
            action=AuditAction.NOTE_TEMPLATE_UPDATED,
            actor_user_id=by.pk,
            actor_role=by.role,
            object_type="note_template",
            object_id=locked.pk,
            details={"fields": changed},
        )
    return locked


# --- notes ---


@transaction.atomic
def note_create(*, encounter: Encounter, author: User, template: NoteTemplate | None = None) -> ClinicalNote:
    """The author's note of an encounter, pre-filled from a template. Opening it again returns the same note."""
    existing = ClinicalNote.objects.filter(encounter=encounter, author=author).first()
    if existing is not None:
        return existing
    if author.role != Role.PRACTITIONER or not encounter.participants.filter(user=author).exists():
        raise ValidationError(_("Solo un profesional que participa en la atención escribe su nota."), code="role")
    if encounter.status == EncounterStatus.CANCELLED:
        raise ValidationError(_("La atención fue cancelada."), code="cancelled")
    if template is not None:
        # Read again: the admin may have withdrawn it since the editor was opened.
        template = NoteTemplate.objects.filter(pk=template.pk).first()
    if template is not None and not template.is_active:
        raise ValidationError({"template": _("La plantilla ya no está disponible.")}, code="inactive")
    content = validate_content(_merge(empty_content(), template.content if template else {}))
    now = timezone.now()
    text = dump_content(content)
    note = ClinicalNote.objects.create(
        encounter=encounter,
        patient_id=encounter.patient_id,
        author=author,
        template=template,
        content=text,
        version=1,
        created_at=now,
        updated_at=now,
    )
    NoteRevision.objects.create(note=note, version=1, content=text, saved_at=now, saved_by=author)
    audit.record(
        action=AuditAction.NOTE_CREATED,
        purpose=Purpose.TREATMENT,
        actor_user_id=author.pk,
        actor_role=author.role,
        patient_id=encounter.patient_id,
        object_type="note",
        object_id=note.pk,
        details={"encounter": encounter.pk, "template": template.pk if template else None},
    )
    return note


def _refusal(note_id: int, expected_version: int) -> ValidationError:
    """Why a conditional save touched no row (only on the failure path: the happy path stays two statements)."""
    current = ClinicalNote.objects.filter(pk=note_id).values("status", "version").first()
    if current is None:
        return ValidationError(_("La nota no existe."), code="missing")
    if current["status"] == NoteStatus.SIGNED:
        return ValidationError(
            _("La nota está firmada y ya no se puede modificar; registre una enmienda."), code="signed"
        )
    return ValidationError(
        _(
            "La nota fue modificada en otra ventana o dispositivo (versión %(current)d, "
            "usted editaba la %(expected)d). Recargue la página para ver la última versión antes de seguir."
        )
        % {"current": current["version"], "expected": expected_version},
        code="stale_version",
    )


@transaction.atomic
def note_save_draft(*, note: ClinicalNote, content: dict[str, Any], by: User, expected_version: int) -> ClinicalNote:
    """Save a draft (autosave or explicit): one conditional UPDATE and one revision INSERT.

    Refused when the note is signed, when `by` is not its author, or when `expected_version` is not the
    current one (another tab saved in between: its text must not be overwritten silently).
    """
    if note.author_id != by.pk:
        raise ValidationError(_("Solo el autor edita el borrador de su nota."), code="not_author")
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise ValidationError({"version": _("Versión no válida.")}, code="invalid")
    cleaned = validate_content(content)
    text = dump_content(cleaned)
    now = timezone.now()
    updated = ClinicalNote.objects.filter(
        pk=note.pk, status=NoteStatus.DRAFT, version=expected_version, author_id=by.pk
    ).update(content=text, version=F("version") + 1, updated_at=now)
    if not updated:
        raise _refusal(note.pk, expected_version)
    version = expected_version + 1
    NoteRevision.objects.create(note_id=note.pk, version=version, content=text, saved_at=now, saved_by=by)
    audit.record(
        action=AuditAction.NOTE_DRAFT_SAVED,
        purpose=Purpose.TREATMENT,
        actor_user_id=by.pk,
        actor_role=by.role,
        patient_id=note.patient_id,
        object_type="note",
        object_id=note.pk,
        details={"version": version},
    )
    note.content, note.version, note.updated_at = text, version, now
    return note
