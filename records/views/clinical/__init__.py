"""Practitioner pages of the encounter record: the chart (header, timeline, consents), the note editor with
autosave, CIE-10 search and prescription alerts, signing, amendments and the signed PDF.

Thin views: parse → gate (records.access) → service (records.encounters, notes, signing, medications) → render.
URLs carry database ids only; a search text is sent in a query string to a JSON endpoint that names no patient.
"""

from records.views.clinical.chart import (
    allergy_add,
    encounter_timeline,
    encounter_unscheduled_start,
    medication_add,
    note_open,
    patient_chart,
    problem_add,
)
from records.views.clinical.editor import (
    alert_acknowledge,
    cie10_search,
    content_from_form,
    note_apply_template,
    note_autosave,
    note_page,
)
from records.views.clinical.signing import note_amend, note_pdf, note_sign_view

__all__ = [
    "alert_acknowledge",
    "allergy_add",
    "cie10_search",
    "content_from_form",
    "encounter_timeline",
    "encounter_unscheduled_start",
    "medication_add",
    "note_amend",
    "note_apply_template",
    "note_autosave",
    "note_open",
    "note_page",
    "note_pdf",
    "note_sign_view",
    "patient_chart",
    "problem_add",
]
