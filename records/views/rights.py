"""The data-protection queue (SEC-4, SEC-5): clinic admins act as the data-protection officer (extend, resolve,
rectify, legal holds); coordinators may read the queue and the requests."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import formats
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import AccessDenied, request_user, role_required
from accounts.models import Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records import services
from records.access import patient_for_data_protection, rights_request_for
from records.forms import ExtendForm, LegalHoldForm, RectifyForm, ResolveForm
from records.models import DataRightsRequest, LegalHold, PatientRevision, RightsKind, RightsStatus
from records.models.rights import OPEN_STATUSES
from records.retention import legal_hold_place, legal_hold_release, patient_block, retention_until
from records.rights import rights_queue, rights_request_extend, rights_request_resolve


def _user(request: HttpRequest) -> User:
    return request_user(request)


@role_required(Role.CLINIC_ADMIN, Role.COORDINATOR)
@require_http_methods(["GET"])
def rights_queue_view(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    requests = list(
        rights_queue()
        .select_related("patient")
        .only(
            "pk",
            "kind",
            "status",
            "filed_at",
            "due_date",
            "extended_due_date",
            "patient__given_names",
            "patient__paternal_surname",
            "patient__maternal_surname",
        )
    )
    audit.record(
        action=AuditAction.RIGHTS_QUEUE_VIEWED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=user.pk,
        actor_role=user.role,
        details={"requests": [r.pk for r in requests][:100]},
    )
    overdue = sum(1 for r in requests if r.overdue)
    return render(request, "records/rights_queue.html", {"requests": requests, "overdue": overdue})


def _detail(
    request: HttpRequest, rights_request: DataRightsRequest, *, status: int = 200, **forms: object
) -> HttpResponse:
    user = _user(request)
    is_open = rights_request.status in OPEN_STATUSES
    context = {
        "rights_request": rights_request,
        "patient": rights_request.patient,
        "retention_until": retention_until(rights_request.patient),
        "is_open": is_open,
        "can_act": user.role == Role.CLINIC_ADMIN and is_open,
        "is_admin": user.role == Role.CLINIC_ADMIN,
        "extend_form": forms.get("extend_form") or ExtendForm(),
        # After the one extension the form is gone, unless it has to show why a second one was refused.
        "show_extend": not rights_request.extended_due_date or "extend_form" in forms,
        "resolve_form": forms.get("resolve_form") or ResolveForm(),
        "is_rectification": rights_request.kind == RightsKind.RECTIFICATION,
    }
    return render(request, "records/rights_request.html", context, status=status)


@role_required(Role.CLINIC_ADMIN, Role.COORDINATOR)
@require_http_methods(["GET"])
def rights_request_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    return _detail(request, rights_request_for(_user(request), request_id))


@role_required(Role.CLINIC_ADMIN)
@require_POST
def rights_request_extend_view(request: HttpRequest, request_id: int) -> HttpResponse:
    user = _user(request)
    rights_request = rights_request_for(user, request_id, to_act=True)
    form = ExtendForm(request.POST)
    if form.is_valid():
        try:
            rights_request_extend(request=rights_request, reason=form.cleaned_data["reason"], by=user)
        except ValidationError as error:
            form.add_error("reason", error.messages[0])
        else:
            messages.success(request, _("Plazo prorrogado una vez."))
            return redirect("records:rights_request", request_id=rights_request.pk)
    return _detail(request, rights_request, status=400, extend_form=form)


@role_required(Role.CLINIC_ADMIN)
@require_POST
def rights_request_resolve_view(request: HttpRequest, request_id: int) -> HttpResponse:
    user = _user(request)
    rights_request = rights_request_for(user, request_id, to_act=True)
    form = ResolveForm(request.POST)
    if form.is_valid():
        status = RightsStatus(form.cleaned_data["status"])
        try:
            resolved = rights_request_resolve(
                request=rights_request, status=status, resolution=form.cleaned_data["resolution"], by=user
            )
        except ValidationError as error:
            form.add_error("resolution" if error.code == "resolution_required" else None, error.messages[0])
        else:
            if resolved.kind == RightsKind.CANCELLATION and status == RightsStatus.COMPLETED:
                # Clinical records must be kept through retention: a granted cancellation blocks the record.
                patient_block(patient=rights_request.patient, by=user)
                until = formats.date_format(retention_until(rights_request.patient).date(), "DATE_FORMAT")
                messages.success(
                    request,
                    _(
                        "Solicitud atendida. El registro del paciente quedó bloqueado: fuera del uso habitual, "
                        "conservado por obligación legal hasta el %(date)s como mínimo."
                    )
                    % {"date": until},
                )
            else:
                messages.success(request, _("Solicitud actualizada."))
            return redirect("records:rights_request", request_id=rights_request.pk)
    return _detail(request, rights_request, status=400, resolve_form=form)


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET", "POST"])
def rights_request_rectify(request: HttpRequest, request_id: int) -> HttpResponse:
    """Rectification of demographic data: a versioned change; the old values are kept (PatientRevision)."""
    user = _user(request)
    rights_request = rights_request_for(user, request_id, to_act=True)
    if rights_request.kind != RightsKind.RECTIFICATION or rights_request.status not in OPEN_STATUSES:
        raise AccessDenied
    patient = rights_request.patient
    initial = {name: getattr(patient, name) for name in services.RECTIFIABLE_FIELDS}
    initial = {k: ("" if v is None else v) for k, v in initial.items()}
    form = RectifyForm(request.POST if request.method == "POST" else None, initial=initial)
    if form.is_bound and form.is_valid():
        try:
            revision = services.patient_rectify(
                patient=patient,
                changes={name: form.cleaned_data[name] for name in services.RECTIFIABLE_FIELDS},
                by=user,
                rights_request=rights_request,
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if revision is None:
                messages.info(request, _("No se cambió ningún dato."))
            else:
                messages.success(request, _("Datos rectificados. Los valores anteriores quedan guardados."))
            return redirect("records:rights_request", request_id=rights_request.pk)
    revisions = list(
        PatientRevision.objects.filter(patient=patient).select_related("changed_by").defer("previous_values")[:20]
    )
    context = {"rights_request": rights_request, "patient": patient, "form": form, "revisions": revisions}
    return render(request, "records/rights_rectify.html", context, status=400 if form.is_bound else 200)


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET", "POST"])
def legal_holds(request: HttpRequest, patient_id: int) -> HttpResponse:
    user = _user(request)
    patient = patient_for_data_protection(user, patient_id)
    form = LegalHoldForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        legal_hold_place(patient=patient, reason=form.cleaned_data["reason"], by=user)
        messages.success(request, _("Retención legal registrada: nada de este paciente se eliminará mientras siga."))
        return redirect("records:legal_holds", patient_id=patient.pk)
    holds = list(LegalHold.objects.filter(patient=patient).select_related("placed_by", "released_by").order_by("-pk"))
    context = {"patient": patient, "holds": holds, "form": form, "retention_until": retention_until(patient)}
    return render(request, "records/legal_holds.html", context, status=400 if form.is_bound else 200)


@role_required(Role.CLINIC_ADMIN)
@require_POST
def legal_hold_release_view(request: HttpRequest, patient_id: int, hold_id: int) -> HttpResponse:
    user = _user(request)
    patient = patient_for_data_protection(user, patient_id)
    hold = LegalHold.objects.filter(pk=hold_id, patient=patient, released_at__isnull=True).first()
    if hold is None:
        raise AccessDenied
    legal_hold_release(hold=hold, by=user)
    messages.success(request, _("Retención legal levantada."))
    return redirect("records:legal_holds", patient_id=patient.pk)
