"""Routes of the staff pages of records, mounted at /records/. URLs carry ids only, never personal data."""

from django.urls import path, register_converter

from records.views import clinical, consents, patients, rights
from records.views.templates_admin import (
    note_template_deactivate,
    note_template_edit,
    note_template_new,
    note_template_reactivate,
    note_templates,
)

app_name = "records"


class IdConverter:
    """A database id: at most 18 digits, so an absurd number is a 404 rather than an out-of-range query."""

    regex = "[0-9]{1,18}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("patients/new/", patients.patient_register, name="patient_register"),
    path("patients/search/", patients.patient_search, name="patient_search"),
    path("patients/<id:patient_id>/", patients.patient_profile, name="patient_profile"),
    path("patients/<id:patient_id>/registered/", patients.patient_registered, name="patient_registered"),
    path(
        "patients/<id:patient_id>/duplicates/<id:flag_id>/",
        patients.possible_duplicate_resolve,
        name="possible_duplicate_resolve",
    ),
    path(
        "patients/<id:patient_id>/representatives/",
        patients.legal_representative_add,
        name="legal_representative_add",
    ),
    path("patients/<id:patient_id>/consents/<slug:kind>/verbal/", patients.verbal_consent, name="verbal_consent"),
    path("patients/<id:patient_id>/chart/", clinical.patient_chart, name="patient_chart"),
    path("patients/<id:patient_id>/chart/allergies/", clinical.allergy_add, name="allergy_add"),
    path("patients/<id:patient_id>/chart/problems/", clinical.problem_add, name="problem_add"),
    path("patients/<id:patient_id>/chart/medications/", clinical.medication_add, name="medication_add"),
    path(
        "patients/<id:patient_id>/chart/encounters/new/",
        clinical.encounter_unscheduled_start,
        name="encounter_unscheduled",
    ),
    path("encounters/<id:encounter_id>/note/", clinical.note_open, name="note_open"),
    path("notes/<id:note_id>/", clinical.note_page, name="note"),
    path("notes/<id:note_id>/template/", clinical.note_apply_template, name="note_apply_template"),
    path("notes/<id:note_id>/autosave/", clinical.note_autosave, name="note_autosave"),
    path("notes/<id:note_id>/alerts/acknowledge/", clinical.alert_acknowledge, name="alert_acknowledge"),
    path("notes/<id:note_id>/sign/", clinical.note_sign_view, name="note_sign"),
    path("notes/<id:note_id>/amend/", clinical.note_amend, name="note_amend"),
    path("notes/<id:note_id>/pdf/", clinical.note_pdf, name="note_pdf"),
    path("cie10/search/", clinical.cie10_search, name="cie10_search"),
    path("patients/<id:patient_id>/emergency-access/", patients.emergency_access, name="emergency_access"),
    path("patients/<id:patient_id>/legal-holds/", rights.legal_holds, name="legal_holds"),
    path(
        "patients/<id:patient_id>/legal-holds/<id:hold_id>/release/",
        rights.legal_hold_release_view,
        name="legal_hold_release",
    ),
    path("consent-documents/", consents.consent_documents, name="consent_documents"),
    path("consent-documents/new/", consents.consent_document_new, name="consent_document_new"),
    path("consent-documents/kind/<slug:kind>/", consents.consent_kind, name="consent_kind"),
    path("consent-documents/<id:document_id>/", consents.consent_document, name="consent_document"),
    path("rights/", rights.rights_queue_view, name="rights_queue"),
    path("rights/<id:request_id>/", rights.rights_request_detail, name="rights_request"),
    path("rights/<id:request_id>/extend/", rights.rights_request_extend_view, name="rights_request_extend"),
    path("rights/<id:request_id>/resolve/", rights.rights_request_resolve_view, name="rights_request_resolve"),
    path("rights/<id:request_id>/rectify/", rights.rights_request_rectify, name="rights_request_rectify"),
    # Note templates per specialty (clinic admins).
    path("note-templates/", note_templates, name="note_templates"),
    path("note-templates/new/", note_template_new, name="note_template_new"),
    path("note-templates/<id:template_id>/", note_template_edit, name="note_template_edit"),
    path("note-templates/<id:template_id>/deactivate/", note_template_deactivate, name="note_template_deactivate"),
    path("note-templates/<id:template_id>/reactivate/", note_template_reactivate, name="note_template_reactivate"),
]
