"""Allergies, problems and current medication (EHR-4): writes, the chart header, prescriptions and their alerts.

Callers pass a patient obtained through records.access.chart_for; the writes check again that the author may
treat the patient (a practitioner in their care or under break-the-glass), so a view that forgot its gate
still cannot write. Every write is audited with ids, codes and field names only, never clinical text.

Prescription alerts work on plain data (the prescription dicts of a note's content, records.notes) so the
note editor can show them while typing and signing can refuse while any is unacknowledged.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from accounts.access import AccessDenied
from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction
from records import cie10
from records.access import chart_policy
from records.drug_knowledge import drug_knowledge
from records.models import (
    AlertKind,
    Allergy,
    AllergySeverity,
    AllergyStatus,
    Medication,
    MedicationSource,
    MedicationStatus,
    Patient,
    PrescriptionAlertAcknowledgement,
    Problem,
    ProblemStatus,
)

SUBSTANCE_MAX = 200
REACTION_MAX = 500
DESCRIPTION_MAX = 500
DRUG_MAX = 200
DOSE_MAX = 200
REASON_MAX = 1000

# A dose: an amount ("500", "0,5", "1/2", "1-2") then a unit that starts with a letter ("mg", "mL", "UI",
# "tableta", "gotas", "mg/kg", "µg"). The amount alone ("500") is refused: it is the classic dosing error.
_AMOUNT = r"\d+(?:[.,/]\d+)?(?:\s*-\s*\d+(?:[.,/]\d+)?)?"
_DOSE_WITH_UNIT = re.compile(rf"^\s*({_AMOUNT})\s*([^\W\d_][^\n]*)$")
_AMOUNT_ONLY = re.compile(rf"^\s*{_AMOUNT}\s*$")


def _practitioner_caring_for(user: User, patient: Patient) -> None:
    # Same refusal for every reason (not a practitioner, no care relationship): AccessDenied, like the gates.
    if user.role != Role.PRACTITIONER or chart_policy(user, patient.pk) is None:
        raise AccessDenied()


def _audit(action: AuditAction, *, by: User, patient_id: int, object_type: str, object_id: int, **details: Any) -> None:
    audit.record(
        action=action,
        actor_user_id=by.pk,
        actor_role=by.role,
        patient_id=patient_id,
        object_type=object_type,
        object_id=object_id,
        details=details or None,
    )


def _text(value: str | None, *, field: str, limit: int, required: bool, required_message: str = "") -> str:
    text = " ".join((value or "").split()) if field != "reason" else (value or "").strip()
    if required and not text:
        raise ValidationError({field: [required_message or _("Este campo es obligatorio.")]}, code="required")
    if len(text) > limit:
        raise ValidationError(
            {field: [_("Escriba como máximo %(limit)d caracteres.") % {"limit": limit}]}, code="max_length"
        )
    return text


def _dose_text(value: str | None, *, field: str = "dose") -> str:
    """A dose given as free text must carry a unit ("500 mg c/8 h"); an empty dose stays empty."""
    text = _text(value, field=field, limit=DOSE_MAX, required=False)
    if text and not _DOSE_WITH_UNIT.match(text):
        raise ValidationError({field: [_dose_unit_message()]}, code="dose_without_unit")
    return text


def _dose_unit_message() -> str:
    return _("Indique la dosis con su unidad, por ejemplo «500 mg», «5 mL» o «1 tableta».")


# --- allergies -----------------------------------------------------------------------------------------


@transaction.atomic
def allergy_record(
    *, patient: Patient, substance: str, severity: str, recorded_by: User, reaction: str | None = None
) -> Allergy:
    _practitioner_caring_for(recorded_by, patient)
    substance = _text(
        substance,
        field="substance",
        limit=SUBSTANCE_MAX,
        required=True,
        required_message=_("Indique la sustancia a la que el paciente es alérgico."),
    )
    reaction = _text(reaction, field="reaction", limit=REACTION_MAX, required=False)
    if severity not in AllergySeverity.values:
        raise ValidationError({"severity": [_("Elija la gravedad de la alergia.")]}, code="severity")
    allergy = Allergy.objects.create(
        patient=patient,
        substance=substance,
        allergy_key=drug_knowledge().allergy_key(substance),
        reaction=reaction or None,
        severity=severity,
        recorded_by=recorded_by,
    )
    _audit(
        AuditAction.ALLERGY_RECORDED,
        by=recorded_by,
        patient_id=patient.pk,
        object_type="allergy",
        object_id=allergy.pk,
        severity=severity,
        in_drug_table=bool(allergy.allergy_key),
    )
    return allergy


@transaction.atomic
def allergy_update_status(*, allergy: Allergy, status: str, by: User) -> Allergy:
    if status not in AllergyStatus.values:
        raise ValidationError({"status": [_("Estado no válido.")]}, code="status")
    locked = Allergy.objects.select_for_update().get(pk=allergy.pk)
    _practitioner_caring_for(by, locked.patient)
    if locked.status == AllergyStatus.ENTERED_IN_ERROR:
        raise ValidationError(_("Una alergia registrada por error no se modifica."), code="entered_in_error")
    previous = locked.status
    locked.status = status
    locked.save(update_fields=["status", "updated_at"])
    _audit(
        AuditAction.ALLERGY_UPDATED,
        by=by,
        patient_id=locked.patient_id,
        object_type="allergy",
        object_id=locked.pk,
        fields=["status"],
        status_from=previous,
        status_to=status,
    )
    return locked


# --- problems ------------------------------------------------------------------------------------------


def _cie10_code(code: str) -> str:
    entry = cie10.lookup(code or "")
    if entry is None:
        raise ValidationError(
            {"cie10_code": [_("«%(code)s» no es un código CIE-10 válido.") % {"code": (code or "")[:12]}]},
            code="cie10_unknown",
        )
    return entry.code


def _not_future(value: dt.date | None, field: str) -> dt.date | None:
    if value is not None and value > timezone.localdate():
        raise ValidationError({field: [_("La fecha no puede estar en el futuro.")]}, code="future_date")
    return value


@transaction.atomic
def problem_record(
    *,
    patient: Patient,
    cie10_code: str,
    recorded_by: User,
    description: str | None = None,
    onset_date: dt.date | None = None,
) -> Problem:
    _practitioner_caring_for(recorded_by, patient)
    code = _cie10_code(cie10_code)
    description = _text(description, field="description", limit=DESCRIPTION_MAX, required=False)
    problem = Problem.objects.create(
        patient=patient,
        cie10_code=code,
        description=description or None,
        onset_date=_not_future(onset_date, "onset_date"),
        recorded_by=recorded_by,
    )
    _audit(
        AuditAction.PROBLEM_RECORDED,
        by=recorded_by,
        patient_id=patient.pk,
        object_type="problem",
        object_id=problem.pk,
    )
    return problem


_UNSET: Any = object()


@transaction.atomic
def problem_update(
    *,
    problem: Problem,
    by: User,
    status: str = _UNSET,
    description: str | None = _UNSET,
    onset_date: dt.date | None = _UNSET,
) -> Problem:
    """Change a problem's status, description or onset. The code is not changed: a wrong code is a problem
    entered in error and a new one recorded, so the list shows what was believed when."""
    locked = Problem.objects.select_for_update().get(pk=problem.pk)
    _practitioner_caring_for(by, locked.patient)
    if locked.status == ProblemStatus.ENTERED_IN_ERROR:
        raise ValidationError(_("Un problema registrado por error no se modifica."), code="entered_in_error")
    changed: list[str] = []
    details: dict[str, Any] = {}
    if status is not _UNSET and status != locked.status:
        if status not in ProblemStatus.values:
            raise ValidationError({"status": [_("Estado no válido.")]}, code="status")
        details = {"status_from": locked.status, "status_to": status}
        locked.status = status
        changed.append("status")
    if description is not _UNSET:
        text = _text(description, field="description", limit=DESCRIPTION_MAX, required=False) or None
        if text != locked.description:
            locked.description = text
            changed.append("description")
    if onset_date is not _UNSET and onset_date != locked.onset_date:
        locked.onset_date = _not_future(onset_date, "onset_date")
        changed.append("onset_date")
    if not changed:
        return locked
    locked.save(update_fields=[*changed, "updated_at"])
    _audit(
        AuditAction.PROBLEM_UPDATED,
        by=by,
        patient_id=locked.patient_id,
        object_type="problem",
        object_id=locked.pk,
        fields=changed,
        **details,
    )
    return locked


# --- current medication ---------------------------------------------------------------------------------


@transaction.atomic
def medication_record(
    *,
    patient: Patient,
    drug_name: str,
    source: str,
    recorded_by: User,
    dose: str | None = None,
    started_on: dt.date | None = None,
    prescription_id: str = "",
) -> Medication:
    _practitioner_caring_for(recorded_by, patient)
    drug_name = _text(
        drug_name,
        field="drug_name",
        limit=DRUG_MAX,
        required=True,
        required_message=_("Indique el nombre del medicamento."),
    )
    if source not in MedicationSource.values:
        raise ValidationError({"source": [_("Indique si la medicación es referida o prescrita.")]}, code="source")
    medication = Medication.objects.create(
        patient=patient,
        drug_name=drug_name,
        ingredient_keys=sorted(drug_knowledge().ingredients(drug_name)),
        dose=_dose_text(dose) or None,
        source=source,
        prescription_id=_prescription_id(prescription_id) if prescription_id else "",
        started_on=_not_future(started_on, "started_on"),
        recorded_by=recorded_by,
    )
    _audit(
        AuditAction.MEDICATION_RECORDED,
        by=recorded_by,
        patient_id=patient.pk,
        object_type="medication",
        object_id=medication.pk,
        source=source,
    )
    return medication


@transaction.atomic
def medication_update(
    *,
    medication: Medication,
    by: User,
    status: str = _UNSET,
    dose: str | None = _UNSET,
    stopped_on: dt.date | None = _UNSET,
) -> Medication:
    """Stop a medication, correct its dose, or mark it entered in error. Stopping dates it today by default."""
    locked = Medication.objects.select_for_update().get(pk=medication.pk)
    _practitioner_caring_for(by, locked.patient)
    if locked.status == MedicationStatus.ENTERED_IN_ERROR:
        raise ValidationError(_("Una medicación registrada por error no se modifica."), code="entered_in_error")
    changed: list[str] = []
    details: dict[str, Any] = {}
    if status is not _UNSET and status != locked.status:
        if status not in MedicationStatus.values:
            raise ValidationError({"status": [_("Estado no válido.")]}, code="status")
        details = {"status_from": locked.status, "status_to": status}
        locked.status = status
        changed.append("status")
        if status == MedicationStatus.STOPPED and stopped_on is _UNSET and locked.stopped_on is None:
            stopped_on = timezone.localdate()
    if dose is not _UNSET:
        text = _dose_text(dose) or None
        if text != locked.dose:
            locked.dose = text
            changed.append("dose")
    if stopped_on is not _UNSET and stopped_on != locked.stopped_on:
        stopped_on = _not_future(stopped_on, "stopped_on")
        if stopped_on and locked.started_on and stopped_on < locked.started_on:
            raise ValidationError(
                {"stopped_on": [_("La fecha de fin no puede ser anterior a la fecha de inicio.")]},
                code="stopped_before_started",
            )
        locked.stopped_on = stopped_on
        changed.append("stopped_on")
    if not changed:
        return locked
    locked.save(update_fields=[*changed, "updated_at"])
    _audit(
        AuditAction.MEDICATION_UPDATED,
        by=by,
        patient_id=locked.patient_id,
        object_type="medication",
        object_id=locked.pk,
        fields=changed,
        **details,
    )
    return locked


# --- chart header ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartHeader:
    allergies: list[Allergy]
    problems: list[Problem]
    medications: list[Medication]

    @property
    def has_severe_allergy(self) -> bool:
        return any(a.severity == AllergySeverity.SEVERE for a in self.allergies)


def chart_header(patient: Patient) -> ChartHeader:
    """Active allergies, active problems and current medication, in three queries whatever their number.

    A read helper for chart pages: the page's gate (records.access.chart_for) has already audited the read.
    """
    return ChartHeader(
        allergies=list(
            Allergy.objects.filter(patient=patient, status=AllergyStatus.ACTIVE).order_by("-severity", "recorded_at")
        ),
        problems=list(Problem.objects.filter(patient=patient, status=ProblemStatus.ACTIVE).order_by("recorded_at")),
        medications=list(
            Medication.objects.filter(patient=patient, status=MedicationStatus.ACTIVE).order_by("recorded_at")
        ),
    )


# --- prescriptions --------------------------------------------------------------------------------------

PRESCRIPTION_FIELDS = (
    "id",
    "drug",
    "concentration",
    "form",
    "dose",
    "dose_unit",
    "route",
    "frequency",
    "duration",
    "quantity",
    "instructions",
)
_PRESCRIPTION_LIMITS = {
    "drug": DRUG_MAX,
    "concentration": 100,
    "form": 100,
    "dose": 50,
    "dose_unit": 50,
    "route": 100,
    "frequency": 100,
    "duration": 100,
    "quantity": 100,
    "instructions": 1000,
}


def _prescription_id(value: object) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValidationError({"id": [_("Identificador de prescripción no válido.")]}, code="prescription_id") from None


def prescription_validate(prescription: dict[str, Any]) -> dict[str, Any]:
    """The cleaned prescription (every field of records.notes' prescription shape, stripped), or a
    ValidationError naming each faulty field. The dose is split into amount and unit: "500 mg" in `dose` with
    an empty `dose_unit` becomes dose "500", unit "mg"; an amount with no unit anywhere is refused."""
    if not isinstance(prescription, dict):
        raise ValidationError(_("Prescripción no válida."), code="invalid")
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    raw_id = prescription.get("id")
    try:
        cleaned["id"] = _prescription_id(raw_id) if raw_id else str(uuid.uuid4())
    except ValidationError as exc:
        errors.update(exc.message_dict)
    for name, limit in _PRESCRIPTION_LIMITS.items():
        value = prescription.get(name)
        text = " ".join(str(value).split()) if value is not None else ""
        if len(text) > limit:
            errors.setdefault(name, []).append(_("Escriba como máximo %(limit)d caracteres.") % {"limit": limit})
        cleaned[name] = text
    required = {
        "drug": _("Indique el medicamento."),
        "dose": _("Indique la dosis."),
        "route": _("Indique la vía de administración."),
        "frequency": _("Indique la frecuencia."),
        "duration": _("Indique la duración del tratamiento."),
    }
    for name, message in required.items():
        if not cleaned[name] and name not in errors:
            errors[name] = [message]
    if cleaned["dose"] and "dose" not in errors:
        with_unit = _DOSE_WITH_UNIT.match(cleaned["dose"])
        if with_unit and not cleaned["dose_unit"]:
            cleaned["dose"], cleaned["dose_unit"] = with_unit.group(1), with_unit.group(2).strip()
        elif not _AMOUNT_ONLY.match(cleaned["dose"]):
            errors["dose"] = [_("La dosis debe ser una cantidad, por ejemplo «500» o «1/2».")]
        elif not cleaned["dose_unit"]:
            errors["dose_unit"] = [_dose_unit_message()]
        elif not re.match(r"^[^\W\d_]", cleaned["dose_unit"]):
            errors["dose_unit"] = [_("La unidad de la dosis no es válida.")]
    if errors:
        raise ValidationError(errors)
    return cleaned


@dataclass(frozen=True)
class Alert:
    kind: str  # AlertKind: "allergy" | "interaction"
    key: str  # stable, so an acknowledgement can be matched: "allergy:<allergy id>:<ingredient>", ...
    message: str  # in the active language, for the prescriber
    severity: str  # "high" | "moderate" | "low"


def _english() -> bool:
    return (get_language() or "").lower().startswith("en")


def _drug_text(prescription: dict[str, Any]) -> str:
    return " ".join(str(prescription.get(name) or "") for name in ("drug", "concentration", "form")).strip()


_SEVERITY_ORDER = {"high": 0, "moderate": 1, "low": 2}


def _alerts(
    prescription: dict[str, Any],
    *,
    allergies: Iterable[Allergy],
    medications: Iterable[Medication],
    other_prescriptions: Iterable[dict[str, Any]],
) -> list[Alert]:
    knowledge = drug_knowledge()
    english = _english()
    drug = str(prescription.get("drug") or "")
    ingredients = knowledge.ingredients(_drug_text(prescription))
    alerts: list[Alert] = []

    def explanation(es: str, en: str) -> str:
        return (en if english else es) or ""

    language = "en" if english else "es-pe"
    for allergy in allergies:
        if allergy.allergy_key:
            for match in knowledge.allergy_matches(ingredients, [allergy.allergy_key]):
                params = {
                    "substance": allergy.substance,
                    "drug": drug,
                    "ingredient": knowledge.label(match.ingredient, language),
                }
                if match.relation == "cross_reactivity":
                    text = (
                        _(
                            "Posible reactividad cruzada con la alergia registrada a %(substance)s: "
                            "%(drug)s contiene %(ingredient)s."
                        )
                        % params
                    )
                else:
                    text = _("Alergia registrada a %(substance)s: %(drug)s contiene %(ingredient)s.") % params
                note = explanation(match.explanation_es, match.explanation_en)
                alerts.append(
                    Alert(
                        AlertKind.ALLERGY.value,
                        f"allergy:{allergy.pk}:{match.ingredient}",
                        f"{text} {note}".strip(),
                        match.severity,
                    )
                )
                break  # one alert per allergy: the strongest relation
        else:
            # A substance the table does not know (a new drug, a brand we lack): compare the words themselves.
            substance = cie10.fold(allergy.substance)
            if substance and f" {substance} " in f" {cie10.fold(_drug_text(prescription))} ":
                text = _("Alergia registrada a %(substance)s: coincide con %(drug)s.") % {
                    "substance": allergy.substance,
                    "drug": drug,
                }
                alerts.append(Alert(AlertKind.ALLERGY.value, f"allergy:{allergy.pk}:text", text, "high"))

    seen: set[str] = set()
    for medication in medications:
        for interaction in knowledge.interactions(ingredients, medication.ingredient_keys):
            if interaction.key in seen:
                continue
            seen.add(interaction.key)
            text = _("Interacción con la medicación actual (%(other)s): %(explanation)s") % {
                "other": medication.drug_name,
                "explanation": explanation(interaction.explanation_es, interaction.explanation_en),
            }
            alerts.append(
                Alert(AlertKind.INTERACTION.value, f"interaction:{interaction.key}", text, interaction.severity)
            )
    for other in other_prescriptions:
        if other.get("id") and other.get("id") == prescription.get("id"):
            continue
        for interaction in knowledge.interactions(ingredients, knowledge.ingredients(_drug_text(other))):
            if interaction.key in seen:
                continue
            seen.add(interaction.key)
            text = _("Interacción con otra prescripción de esta nota (%(other)s): %(explanation)s") % {
                "other": str(other.get("drug") or ""),
                "explanation": explanation(interaction.explanation_es, interaction.explanation_en),
            }
            alerts.append(
                Alert(AlertKind.INTERACTION.value, f"interaction:{interaction.key}", text, interaction.severity)
            )
    return sorted(alerts, key=lambda a: (_SEVERITY_ORDER.get(a.severity, 3), a.kind, a.key))


def _active_lists(patient: Patient) -> tuple[list[Allergy], list[Medication]]:
    allergies = list(Allergy.objects.filter(patient=patient, status=AllergyStatus.ACTIVE).order_by("pk"))
    medications = list(Medication.objects.filter(patient=patient, status=MedicationStatus.ACTIVE).order_by("pk"))
    return allergies, medications


def prescription_alerts(
    *, patient: Patient, prescription: dict[str, Any], other_prescriptions: Iterable[dict[str, Any]] = ()
) -> list[Alert]:
    """Alerts for one prescription: a match with an active allergy (same ingredient, same allergy class, or a
    known cross-reactivity), and known interactions with the patient's current medication and with the
    note's other prescriptions (`other_prescriptions`, the same dict shape). Highest severity first."""
    allergies, medications = _active_lists(patient)
    return _alerts(
        prescription, allergies=allergies, medications=medications, other_prescriptions=list(other_prescriptions)
    )


@transaction.atomic
def alert_acknowledge(
    *, patient: Patient, note_id: int, prescription_id: str, alert: Alert, reason: str, by: User
) -> PrescriptionAlertAcknowledgement:
    """The prescriber goes ahead despite an alert, with a reason (kept encrypted). Audited with ids and the
    alert's kind only: its key names ingredients, which are clinical information."""
    _practitioner_caring_for(by, patient)
    reason = _text(
        reason,
        field="reason",
        limit=REASON_MAX,
        required=True,
        required_message=_("Indique el motivo para continuar pese a la alerta."),
    )
    if alert.kind not in AlertKind.values:
        raise ValidationError(_("Alerta no válida."), code="alert_kind")
    prescription_id = _prescription_id(prescription_id)
    try:
        with transaction.atomic():
            acknowledgement = PrescriptionAlertAcknowledgement.objects.create(
                patient=patient,
                note_id=note_id,
                prescription_id=prescription_id,
                kind=alert.kind,
                alert_key=alert.key[:200],
                severity=alert.severity,
                reason=reason,
                acknowledged_by=by,
            )
    except IntegrityError:
        # Already acknowledged (a double submit): the first acknowledgement stands, nothing new to audit.
        return PrescriptionAlertAcknowledgement.objects.get(
            note_id=note_id, prescription_id=prescription_id, kind=alert.kind, alert_key=alert.key[:200]
        )
    _audit(
        AuditAction.PRESCRIPTION_ALERT_ACKNOWLEDGED,
        by=by,
        patient_id=patient.pk,
        object_type="prescription_alert_acknowledgement",
        object_id=acknowledgement.pk,
        note=note_id,
        prescription=prescription_id,
        kind=alert.kind,
        severity=alert.severity,
    )
    return acknowledgement


def unacknowledged_alerts(
    *, note_id: int, patient: Patient, prescriptions: list[dict[str, Any]]
) -> list[tuple[str, Alert]]:
    """(prescription id, alert) for every alert of the note's prescriptions not yet acknowledged; signing
    refuses while this is not empty. Acknowledgements count note-wide by alert: an interaction between two of
    the note's prescriptions shows on both, and one acknowledgement answers it. Three queries in all."""
    allergies, medications = _active_lists(patient)
    acknowledged = set(
        PrescriptionAlertAcknowledgement.objects.filter(note_id=note_id).values_list("kind", "alert_key")
    )
    pending: list[tuple[str, Alert]] = []
    for prescription in prescriptions:
        others = [p for p in prescriptions if p is not prescription]
        for alert in _alerts(prescription, allergies=allergies, medications=medications, other_prescriptions=others):
            if (alert.kind, alert.key[:200]) not in acknowledged:
                pending.append((str(prescription.get("id") or ""), alert))
    return pending
