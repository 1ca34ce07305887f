"""Prescriptions: validation, allergy and interaction alerts, acknowledgements (EHR-4).

Alerts work on plain data (the prescription dicts of a note's content, records.notes), so the note editor can
show them while typing and signing can refuse while any is unacknowledged.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from accounts.models import User
from audit.actions import AuditAction
from records import cie10
from records.drug_knowledge import drug_knowledge
from records.medications.lists import (
    AMOUNT_ONLY,
    DOSE_WITH_UNIT,
    DRUG_MAX,
    REASON_MAX,
    audit_write,
    clean_prescription_id,
    clean_text,
    dose_unit_message,
    require_treating_practitioner,
)
from records.models import (
    AlertKind,
    Allergy,
    AllergySeverity,
    AllergyStatus,
    Medication,
    MedicationStatus,
    Patient,
    PrescriptionAlertAcknowledgement,
)

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
        cleaned["id"] = clean_prescription_id(raw_id) if raw_id else str(uuid.uuid4())
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
        with_unit = DOSE_WITH_UNIT.match(cleaned["dose"])
        if with_unit and not cleaned["dose_unit"]:
            cleaned["dose"], cleaned["dose_unit"] = with_unit.group(1), with_unit.group(2).strip()
        elif not AMOUNT_ONLY.match(cleaned["dose"]):
            errors["dose"] = [_("La dosis debe ser una cantidad, por ejemplo «500» o «1/2».")]
        elif not cleaned["dose_unit"]:
            errors["dose_unit"] = [dose_unit_message()]
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
                # Even a weak cross-reactivity matters after a severe reaction (anaphylaxis) to the substance.
                severity = "high" if allergy.severity == AllergySeverity.SEVERE else match.severity
                alerts.append(
                    Alert(
                        AlertKind.ALLERGY.value,
                        f"allergy:{allergy.pk}:{match.ingredient}",
                        f"{text} {note}".strip(),
                        severity,
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
    require_treating_practitioner(by, patient)
    reason = clean_text(
        reason,
        field="reason",
        limit=REASON_MAX,
        required=True,
        required_message=_("Indique el motivo para continuar pese a la alerta."),
        multiline=True,
    )
    if alert.kind not in AlertKind.values or alert.severity not in _SEVERITY_ORDER:
        raise ValidationError(_("Alerta no válida."), code="alert_kind")
    prescription_id = clean_prescription_id(prescription_id)
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
    audit_write(
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
