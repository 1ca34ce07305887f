"""Allergies, problems, current medication and prescriptions with their alerts (EHR-4).

Callers pass a patient obtained through records.access.chart_for; the writes check again that the author may
treat the patient (a practitioner in their care or under break-the-glass), so a view that forgot its gate
still cannot write. Every write is audited with ids, codes and field names only, never clinical text.
`lists` holds the allergy, problem and medication lists and the chart header; `prescriptions` the
prescription checks, alerts and acknowledgements.
"""

from records.medications.lists import (
    ChartHeader,
    allergy_record,
    allergy_update_status,
    chart_header,
    medication_record,
    medication_update,
    problem_record,
    problem_update,
)
from records.medications.prescriptions import (
    PRESCRIPTION_FIELDS,
    Alert,
    alert_acknowledge,
    prescription_alerts,
    prescription_validate,
    unacknowledged_alerts,
)

__all__ = [
    "PRESCRIPTION_FIELDS",
    "Alert",
    "ChartHeader",
    "alert_acknowledge",
    "allergy_record",
    "allergy_update_status",
    "chart_header",
    "medication_record",
    "medication_update",
    "prescription_alerts",
    "prescription_validate",
    "problem_record",
    "problem_update",
    "unacknowledged_alerts",
]
