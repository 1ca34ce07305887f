"""Availability editor (weekly rules and exceptions) for practitioners and those who manage their agenda, and
visit types for clinic admins (SCH-1)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import AccessDenied, role_required
from accounts.models import Establishment, Role, User
from scheduling import availability as services
from scheduling.access import may_manage_availability, practitioners_managed_by
from scheduling.forms import AvailabilityExceptionForm, AvailabilityRuleForm, VisitTypeForm
from scheduling.models import AvailabilityException, AvailabilityRule, ExceptionKind, VisitType
from scheduling.views._common import establishments_query, user_of, zone

EDITORS = (Role.PRACTITIONER, Role.COORDINATOR, Role.CLINIC_ADMIN)
# Which field of the forms a service refusal belongs to.
_RULE_ERROR_FIELDS = {"invalid_range": "end_time", "overlapping_rule": "start_time"}
_EXCEPTION_ERROR_FIELDS = {"invalid_range": "end", "unknown_time_zone": "time_zone"}


def _practitioner(user: User, practitioner_id: int | None) -> User:
    """The practitioner whose agenda is edited: themself, or one the coordinator or admin manages."""
    if practitioner_id is None:
        if user.role != Role.PRACTITIONER:
            raise AccessDenied
        return user
    practitioner = User.objects.filter(pk=practitioner_id, role=Role.PRACTITIONER, is_active=True).first()
    if practitioner is None or not may_manage_availability(user, practitioner):
        raise AccessDenied
    return practitioner


def _shared_establishments(user: User, practitioner: User) -> QuerySet[Establishment]:
    """Where rules may be set: the practitioner's establishments, and for a manager only those they share."""
    places = establishments_query(practitioner)
    if user.pk != practitioner.pk:
        places = places.filter(pk__in=establishments_query(user).values("pk"))
    return places


def _editor_url(user: User, practitioner: User) -> str:
    if user.pk == practitioner.pk:
        return reverse("scheduling:my_availability")
    return reverse("scheduling:availability", kwargs={"practitioner_id": practitioner.pk})


def _editor_context(
    user: User,
    practitioner: User,
    places: QuerySet[Establishment],
    *,
    rule_form: AvailabilityRuleForm | None = None,
    exception_form: AvailabilityExceptionForm | None = None,
) -> dict[str, Any]:
    visit_types = VisitType.objects.filter(establishment__in=places, is_active=True).order_by("name")
    today = timezone.localdate()
    rules = list(
        AvailabilityRule.objects.filter(practitioner=practitioner, establishment__in=places)
        .select_related("establishment")
        .prefetch_related("visit_types")
        .order_by("establishment__name", "weekday", "start_time")
    )
    exceptions = list(
        AvailabilityException.objects.filter(practitioner=practitioner, during__endswith__gte=timezone.now())
        .select_related("establishment")
        .order_by("during")
    )
    fallback = places.first()
    for exception in exceptions:
        tz = zone((exception.establishment or fallback or Establishment()).time_zone)
        exception.local_start = exception.during.lower.astimezone(tz)  # type: ignore[attr-defined]
        exception.local_end = exception.during.upper.astimezone(tz)  # type: ignore[attr-defined]
        exception.zone_name = str(tz)  # type: ignore[attr-defined]
        exception.removable = exception.establishment_id is None or any(  # type: ignore[attr-defined]
            p.pk == exception.establishment_id for p in places
        )
    return {
        "practitioner": practitioner,
        "is_self": user.pk == practitioner.pk,
        "rules": rules,
        "exceptions": exceptions,
        "rule_form": rule_form
        or AvailabilityRuleForm(
            establishments=places, visit_types=visit_types, initial={"valid_from": today}, auto_id="rule_%s"
        ),
        "exception_form": exception_form or AvailabilityExceptionForm(establishments=places, auto_id="exc_%s"),
        "editor_url": _editor_url(user, practitioner),
        "has_places": fallback is not None,
    }


@role_required(*EDITORS)
@require_http_methods(["GET", "POST"])
def availability_editor(request: HttpRequest, practitioner_id: int | None = None) -> HttpResponse:
    user = user_of(request)
    if practitioner_id is None and user.role != Role.PRACTITIONER:
        # Coordinators and admins first choose whose agenda to edit.
        return render(request, "scheduling/availability_choose.html", {"practitioners": practitioners_managed_by(user)})
    practitioner = _practitioner(user, practitioner_id)
    places = _shared_establishments(user, practitioner)
    if request.method == "GET":
        return render(request, "scheduling/availability.html", _editor_context(user, practitioner, places))
    visit_types = VisitType.objects.filter(establishment__in=places, is_active=True)
    action = request.POST.get("action", "")
    if action == "rule":
        form = AvailabilityRuleForm(request.POST, establishments=places, visit_types=visit_types, auto_id="rule_%s")
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.availability_rule_create(
                    practitioner=practitioner,
                    establishment=data["establishment"],
                    weekday=data["weekday"],
                    start_time=data["start_time"],
                    end_time=data["end_time"],
                    valid_from=data["valid_from"],
                    valid_until=data["valid_until"],
                    visit_types=list(data["visit_types"]),
                    by=user,
                )
            except ValidationError as error:
                form.add_error(_RULE_ERROR_FIELDS.get(str(error.code)), error.messages[0])
            else:
                messages.success(request, _("Horario semanal agregado."))
                return redirect(_editor_url(user, practitioner))
        context = _editor_context(user, practitioner, places, rule_form=form)
    elif action == "exception":
        exception_form = AvailabilityExceptionForm(request.POST, establishments=places, auto_id="exc_%s")
        if exception_form.is_valid():
            data = exception_form.cleaned_data
            try:
                services.availability_exception_create(
                    practitioner=practitioner,
                    establishment=data["establishment"],
                    kind=ExceptionKind(data["kind"]),
                    start=data["start_utc"],
                    end=data["end_utc"],
                    label=data["label"],
                    by=user,
                )
            except ValidationError as error:
                exception_form.add_error(_EXCEPTION_ERROR_FIELDS.get(str(error.code)), error.messages[0])
            else:
                messages.success(request, _("Excepción registrada."))
                return redirect(_editor_url(user, practitioner))
        context = _editor_context(user, practitioner, places, exception_form=exception_form)
    else:
        context = _editor_context(user, practitioner, places)
        messages.error(request, _("Elija qué agregar: un horario semanal o una excepción."))
    return render(request, "scheduling/availability.html", context, status=400)


@role_required(*EDITORS)
@require_POST
def availability_rule_remove(request: HttpRequest, practitioner_id: int, rule_id: int) -> HttpResponse:
    user = user_of(request)
    practitioner = _practitioner(user, practitioner_id)
    places = _shared_establishments(user, practitioner)
    rule = AvailabilityRule.objects.filter(pk=rule_id, practitioner=practitioner, establishment__in=places).first()
    if rule is None:
        raise AccessDenied
    services.availability_rule_remove(rule=rule, by=user)
    messages.success(request, _("Horario semanal eliminado."))
    return redirect(_editor_url(user, practitioner))


@role_required(*EDITORS)
@require_POST
def availability_exception_remove(request: HttpRequest, practitioner_id: int, exception_id: int) -> HttpResponse:
    user = user_of(request)
    practitioner = _practitioner(user, practitioner_id)
    places = _shared_establishments(user, practitioner)
    exception = AvailabilityException.objects.filter(pk=exception_id, practitioner=practitioner).first()
    if exception is None or (
        exception.establishment_id is not None and not places.filter(pk=exception.establishment_id).exists()
    ):
        raise AccessDenied
    services.availability_exception_remove(exception=exception, by=user)
    messages.success(request, _("Excepción eliminada."))
    return redirect(_editor_url(user, practitioner))


# --- visit types --------------------------------------------------------------------------------------------------

_VISIT_TYPE_FIELDS = ("name", "specialty", "service_type", "modality", "duration_minutes", "buffer_minutes")


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET", "POST"])
def visit_types(request: HttpRequest) -> HttpResponse:
    user = user_of(request)
    places = establishments_query(user)
    form = VisitTypeForm(request.POST if request.method == "POST" else None, establishments=places, auto_id="vt_%s")
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            services.visit_type_create(
                establishment=data["establishment"], by=user, **{name: data[name] for name in _VISIT_TYPE_FIELDS}
            )
        except ValidationError as error:
            form.add_error(None, error.messages[0])
        else:
            messages.success(request, _("Tipo de cita creado."))
            return redirect("scheduling:visit_types")
    listed = VisitType.objects.filter(establishment__in=places).select_related("establishment")
    context = {"form": form, "visit_types": listed.order_by("establishment__name", "specialty", "name")}
    return render(request, "scheduling/visit_types.html", context, status=400 if form.is_bound else 200)


@role_required(Role.CLINIC_ADMIN)
@require_http_methods(["GET", "POST"])
def visit_type_edit(request: HttpRequest, visit_type_id: int) -> HttpResponse:
    user = user_of(request)
    places = establishments_query(user)
    visit_type = (
        VisitType.objects.filter(pk=visit_type_id, establishment__in=places).select_related("establishment").first()
    )
    if visit_type is None:
        raise AccessDenied
    initial = {name: getattr(visit_type, name) for name in (*_VISIT_TYPE_FIELDS, "is_active")}
    form = VisitTypeForm(
        request.POST if request.method == "POST" else None,
        initial=initial,
        establishments=places,
        editing=visit_type,
        auto_id="vt_%s",
    )
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        changed = {name: data[name] for name in (*_VISIT_TYPE_FIELDS, "is_active") if data[name] != initial[name]}
        try:
            if changed:
                services.visit_type_update(visit_type=visit_type, by=user, **changed)
        except ValidationError as error:
            form.add_error(None, error.messages[0])
        else:
            messages.success(request, _("Tipo de cita actualizado."))
            return redirect("scheduling:visit_types")
    context = {"form": form, "visit_type": visit_type}
    return render(request, "scheduling/visit_type_edit.html", context, status=400 if form.is_bound else 200)
