"""Allergies, problems and current medication: writes and the chart header (EHR-4)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import AccessDenied
from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction
from records import cie10
from records.access import chart_policy
from records.drug_knowledge import drug_knowledge
from records.models import (
    Allergy,
    AllergySeverity,
    AllergyStatus,
    Medication,
    MedicationSource,
    MedicationStatus,
    Patient,
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
DOSE_WITH_UNIT = re.compile(rf"^\s*({_AMOUNT})\s*([^\W\d_][^\n]*)$")
AMOUNT_ONLY = re.compile(rf"^\s*{_AMOUNT}\s*$")


def require_treating_practitioner(user: User, patient: Patient) -> None:
    # Same refusal for every reason (not a practitioner, no care relationship): AccessDenied, like the gates.
    if user.role != Role.PRACTITIONER or chart_policy(user, patient.pk) is None:
        raise AccessDenied()


def audit_write(
    action: AuditAction, *, by: User, patient_id: int, object_type: str, object_id: int, **details: Any
) -> None:
    audit.record(
        action=action,
        actor_user_id=by.pk,
        actor_role=by.role,
        patient_id=patient_id,
        object_type=object_type,
        object_id=object_id,
        details=details or None,
    )


def clean_text(
    value: str | None, *, field: str, limit: int, required: bool, required_message: str = "", multiline: bool = False
) -> str:
    """Stripped text (inner whitespace collapsed unless `multiline`), or a ValidationError on `field`."""
    text = (value or "").strip() if multiline else " ".join((value or "").split())
    if required and not text:
        raise ValidationError({field: [required_message or _("Este campo es obligatorio.")]}, code="required")
    if len(text) > limit:
        raise ValidationError(
            {field: [_("Escriba como máximo %(limit)d caracteres.") % {"limit": limit}]}, code="max_length"
        )
    return text


def _dose_text(value: str | None, *, field: str = "dose") -> str:
    """A dose given as free text must carry a unit ("500 mg c/8 h"); an empty dose stays empty."""
    text = clean_text(value, field=field, limit=DOSE_MAX, required=False)
    if text and not DOSE_WITH_UNIT.match(text):
        raise ValidationError({field: [dose_unit_message()]}, code="dose_without_unit")
    return text


def dose_unit_message() -> str:
    return _("Indique la dosis con su unidad, por ejemplo «500 mg», «5 mL» o «1 tableta».")


# --- allergies -----------------------------------------------------------------------------------------


@transaction.atomic
def allergy_record(
    *, patient: Patient, substance: str, severity: str, recorded_by: User, reaction: str | None = None
) -> Allergy:
    require_treating_practitioner(recorded_by, patient)
    substance = clean_text(
        substance,
        field="substance",
        limit=SUBSTANCE_MAX,
        required=True,
        required_message=_("Indique la sustancia a la que el paciente es alérgico."),
    )
    reaction = clean_text(reaction, field="reaction", limit=REACTION_MAX, required=False, multiline=True)
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
    audit_write(
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
    require_treating_practitioner(by, locked.patient)
    if locked.status == AllergyStatus.ENTERED_IN_ERROR:
        raise ValidationError(_("Una alergia registrada por error no se modifica."), code="entered_in_error")
    previous = locked.status
    locked.status = status
    locked.save(update_fields=["status", "updated_at"])
    audit_write(
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
    require_treating_practitioner(recorded_by, patient)
    code = _cie10_code(cie10_code)
    description = clean_text(description, field="description", limit=DESCRIPTION_MAX, required=False)
    problem = Problem.objects.create(
        patient=patient,
        cie10_code=code,
        description=description or None,
        onset_date=_not_future(onset_date, "onset_date"),
        recorded_by=recorded_by,
    )
    audit_write(
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
    require_treating_practitioner(by, locked.patient)
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
        text = clean_text(description, field="description", limit=DESCRIPTION_MAX, required=False) or None
        if text != locked.description:
            locked.description = text
            changed.append("description")
    if onset_date is not _UNSET and onset_date != locked.onset_date:
        locked.onset_date = _not_future(onset_date, "onset_date")
        changed.append("onset_date")
    if not changed:
        return locked
    locked.save(update_fields=[*changed, "updated_at"])
    audit_write(
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
    require_treating_practitioner(recorded_by, patient)
    drug_name = clean_text(
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
        prescription_id=clean_prescription_id(prescription_id) if prescription_id else "",
        started_on=_not_future(started_on, "started_on"),
        recorded_by=recorded_by,
    )
    audit_write(
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
    require_treating_practitioner(by, locked.patient)
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
    audit_write(
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
            # "severe" > "moderate" > "mild" alphabetically too: the most dangerous first.
            Allergy.objects.filter(patient=patient, status=AllergyStatus.ACTIVE).order_by("-severity", "recorded_at")
        ),
        problems=list(Problem.objects.filter(patient=patient, status=ProblemStatus.ACTIVE).order_by("recorded_at")),
        medications=list(
            Medication.objects.filter(patient=patient, status=MedicationStatus.ACTIVE).order_by("recorded_at")
        ),
    )


def clean_prescription_id(value: object) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValidationError({"id": [_("Identificador de prescripción no válido.")]}, code="prescription_id") from None
