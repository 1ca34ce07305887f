"""Who opened my record (AUD-3), my data-protection requests (SEC-4) and the download of my own data."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import reauth_required, request_user
from frontend.patient.common import patient_page
from frontend.patient.forms import RIGHT_NAMES, STATUS_WORDS, RightsRequestForm
from records.models import DataRightsRequest, Patient, RightsKind
from records.models.rights import OPEN_STATUSES
from records.rights import patient_export, rights_request_file
from records.selectors import record_access_log

ACCESS_LOG_PAGE_SIZE = 20
# The patient's page covers the newest events; the full trail is the auditor's, and the export holds all of it.
ACCESS_LOG_LIMIT = 200
EXPORT_FILENAMES = {"json": "mis-datos-teleconsult.json", "pdf": "mis-datos-teleconsult.pdf"}


@never_cache
@patient_page
@require_GET
def access_log(request: HttpRequest, patient: Patient) -> HttpResponse:
    entries = record_access_log(patient, limit=ACCESS_LOG_LIMIT)
    page = Paginator(entries, ACCESS_LOG_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "frontend/patient/access_log.html",
        {"page": page, "zone": settings.DEFAULT_ESTABLISHMENT_TIME_ZONE},
    )


@never_cache
@patient_page
@require_http_methods(["GET", "POST"])
def rights_requests(request: HttpRequest, patient: Patient) -> HttpResponse:
    form = RightsRequestForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_valid():
        try:
            rights_request_file(
                patient=patient,
                kind=RightsKind(form.cleaned_data["kind"]),
                description=form.cleaned_data["description"],
                filed_by=request_user(request),
            )
        except ValidationError as error:
            form.add_error("description" if error.code in ("description_required", "too_long") else None, error)
        else:
            messages.success(request, _("Recibimos su solicitud. Le responderemos hasta la fecha límite indicada."))
            return redirect("mine:rights")
    if form.is_bound:
        status = 400
    requests = [
        {
            "kind": RIGHT_NAMES.get(row.kind, row.kind),
            "status": STATUS_WORDS.get(row.status, row.status),
            "open": row.status in OPEN_STATUSES,
            "filed_at": row.filed_at,
            "due_date": row.effective_due_date,
            "extended": row.extended_due_date is not None,
            "resolution": row.resolution if row.status not in OPEN_STATUSES else "",
        }
        # Only the columns shown: the description is the patient's own words, decrypted needlessly otherwise.
        for row in DataRightsRequest.objects.filter(patient=patient)
        .only("kind", "status", "filed_at", "due_date", "extended_due_date", "resolution")
        .order_by("-filed_at", "-pk")
    ]
    return render(
        request,
        "frontend/patient/rights.html",
        {"form": form, "requests": requests, "zone": settings.DEFAULT_ESTABLISHMENT_TIME_ZONE},
        status=status,
    )


@never_cache
@patient_page
@require_GET
@reauth_required
def export(request: HttpRequest, patient: Patient, fmt: str) -> HttpResponse:
    """My own data as a file; records.rights.patient_export checks ownership again and audits the export."""
    if fmt not in EXPORT_FILENAMES:
        raise Http404
    content, content_type = patient_export(user=request_user(request), patient_id=patient.pk, fmt=fmt)
    response = HttpResponse(content, content_type=content_type)
    # A fixed name: the file name must not carry the patient's name or identifiers (it lands in download lists).
    response["Content-Disposition"] = f'attachment; filename="{EXPORT_FILENAMES[fmt]}"'
    response["Cache-Control"] = "no-store"
    return response
