"""The patient's appointments (SCH-3, mobile-first): book by specialty → slot → confirm within the hold, see
upcoming and past appointments, cancel with a reason, reschedule to another slot."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from itertools import groupby
from typing import Any
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import request_user
from accounts.models import Establishment, Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from frontend.patient.common import patient_page
from records.models import Patient
from scheduling.access import appointment_for
from scheduling.errors import HoldExpired, ParticipantBusy, SlotTaken
from scheduling.models import ACTIVE_STATUSES, Appointment, AppointmentStatus, CancelReason, ParticipantRole, VisitType
from scheduling.selectors import appointments_of_patient, local_times
from scheduling.services import appointment_cancel, appointment_confirm, appointment_hold, appointment_reschedule
from scheduling.slots import Slot, find_slots, specialties

# How far ahead a patient is offered slots, and how many at most (the earliest first).
SEARCH_DAYS = 30
SLOTS_SHOWN = 24
NOTE_MAX = 500


def appointment_times(appointment: Appointment, viewer: Any) -> Any:
    """The start and end in the establishment's zone and, when the viewer's own zone differs, in theirs too."""
    return local_times(appointment, viewer if getattr(viewer, "is_authenticated", False) else None)


class SlotForm(forms.Form):
    """The slot a patient tapped: its start and whose time it is (checked again by the booking service)."""

    start = forms.DateTimeField()
    practitioner = forms.IntegerField(min_value=1)
    visit_type = forms.IntegerField(min_value=1)


class CancelForm(forms.Form):
    note = forms.CharField(
        label=gettext_lazy("¿Por qué cancela? (opcional)"),
        required=False,
        max_length=NOTE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("Nos ayuda a mejorar. Solo lo verá el personal del establecimiento."),
    )


def _zone(appointment_or_slot_establishment_zone: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(appointment_or_slot_establishment_zone or settings.DEFAULT_ESTABLISHMENT_TIME_ZONE)


def _slot_rows(slots: list[Slot]) -> list[dict[str, Any]]:
    """Slots grouped by local day, each with the practitioner's name and the establishment (three queries)."""
    names = dict(User.objects.filter(pk__in={s.practitioner_id for s in slots}).values_list("pk", "full_name"))
    places = {e.pk: e for e in Establishment.objects.filter(pk__in={s.establishment_id for s in slots})}
    types = dict(VisitType.objects.filter(pk__in={s.visit_type_id for s in slots}).values_list("pk", "name"))
    rows = []
    for slot in slots:
        place = places[slot.establishment_id]
        local = slot.start.astimezone(_zone(place.time_zone))
        rows.append(
            {
                "slot": slot,
                "local_start": local,
                "zone": place.time_zone,
                "day": local.date(),
                "practitioner": names.get(slot.practitioner_id, ""),
                "establishment": place.name,
                "visit_type": types.get(slot.visit_type_id, ""),
                "start_value": slot.start.astimezone(dt.UTC).isoformat(),
            }
        )
    return [{"day": day, "rows": list(group)} for day, group in groupby(rows, key=lambda row: row["day"])]


def _search(**criteria: Any) -> list[Slot]:
    now = timezone.now()
    return find_slots(start=now, end=now + dt.timedelta(days=SEARCH_DAYS), limit=SLOTS_SHOWN, now=now, **criteria)


@never_cache
@require_GET
@patient_page
def my_appointments(request: HttpRequest, patient: Patient) -> HttpResponse:
    now = timezone.now()
    appointments = appointments_of_patient(patient)
    upcoming, past = [], []
    for appointment in appointments:
        if appointment.status == AppointmentStatus.HELD and appointment.hold_expires_at <= now:  # type: ignore[operator]
            continue  # a lapsed hold the worker has not expired yet: nothing was booked
        practitioner = next(
            (p.user for p in appointment.participants.all() if p.role == ParticipantRole.PRACTITIONER and p.user),
            None,
        )
        row = {
            "appointment": appointment,
            "times": appointment_times(appointment, request.user),
            "practitioner": practitioner.full_name if practitioner else "",
            "changeable": appointment.status == AppointmentStatus.BOOKED and appointment.start > now,
            "held": appointment.status == AppointmentStatus.HELD,
        }
        if appointment.status in ACTIVE_STATUSES and appointment.end > now:
            upcoming.append(row)
        else:
            past.append(row)
    upcoming.reverse()  # the selector gives newest first: upcoming reads soonest first
    audit.record(
        action=AuditAction.APPOINTMENT_VIEWED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=request.user.pk,
        actor_role=Role.PATIENT,
        patient_id=patient.pk,
        object_type="appointment_list",
        details={"count": len(appointments)},
    )
    return render(request, "frontend/patient/appointments.html", {"upcoming": upcoming, "past": past})


@never_cache
@require_GET
@patient_page
def book(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Step 1: the specialty."""
    return render(request, "frontend/patient/book_specialty.html", {"specialties": specialties()})


def _specialty_or_404(request: HttpRequest) -> str:
    wanted = (request.GET.get("specialty") or request.POST.get("specialty") or "").strip()
    known = {name.casefold(): name for name in specialties()}
    if not wanted or wanted.casefold() not in known:
        raise Http404
    return known[wanted.casefold()]


def _slots_page(
    request: HttpRequest, *, specialty: str, slots: list[Slot], status: int = 200, error: str = "", **extra: Any
) -> HttpResponse:
    context = {
        "specialty": specialty,
        "days": _slot_rows(slots),
        "error": error,
        "action": reverse("mine:appointment_hold"),
        **extra,
    }
    return render(request, "frontend/patient/book_slots.html", context, status=status)


@never_cache
@require_GET
@patient_page
def book_slots(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Step 2: the earliest free slots of the specialty, across its practitioners."""
    specialty = _specialty_or_404(request)
    return _slots_page(request, specialty=specialty, slots=_search(specialty=specialty))


def _chosen(form: SlotForm) -> tuple[VisitType, User] | None:
    visit_type = VisitType.objects.filter(pk=form.cleaned_data["visit_type"], is_active=True).first()
    practitioner = User.objects.filter(
        pk=form.cleaned_data["practitioner"], role=Role.PRACTITIONER, is_active=True
    ).first()
    if visit_type is None or practitioner is None:
        return None
    return visit_type, practitioner


@never_cache
@require_POST
@patient_page
def hold(request: HttpRequest, patient: Patient) -> HttpResponse:
    """Step 3: the tapped slot is held for the patient while they confirm."""
    specialty = _specialty_or_404(request)
    form = SlotForm(request.POST)
    chosen = _chosen(form) if form.is_valid() else None
    if chosen is None:
        message = _("No pudimos leer el horario elegido. Elija uno de la lista, por favor.")
        return _slots_page(request, specialty=specialty, slots=_search(specialty=specialty), status=400, error=message)
    visit_type, practitioner = chosen
    try:
        appointment = appointment_hold(
            visit_type=visit_type,
            practitioner=practitioner,
            patient=patient,
            start=form.cleaned_data["start"],
            booked_by=request_user(request),
        )
    except ParticipantBusy:
        message = _("Usted ya tiene otra cita a esa hora. Elija otro horario, por favor.")
        return _slots_page(request, specialty=specialty, slots=_search(specialty=specialty), status=409, error=message)
    except SlotTaken:
        message = _("Ese horario acaba de ser tomado por otra persona. Elija otro de la lista, por favor.")
        return _slots_page(request, specialty=specialty, slots=_search(specialty=specialty), status=409, error=message)
    except ValidationError as error:
        return _slots_page(
            request, specialty=specialty, slots=_search(specialty=specialty), status=400, error=error.messages[0]
        )
    return redirect("mine:appointment_confirm", public_id=appointment.public_id)


def _slots_url(specialty: str) -> str:
    return f"{reverse('mine:book_slots')}?{urlencode({'specialty': specialty})}"


@never_cache
@require_http_methods(["GET", "POST"])
@patient_page
def confirm(request: HttpRequest, patient: Patient, public_id: UUID) -> HttpResponse:
    """Step 4: confirm the held slot before the hold runs out."""
    appointment = appointment_for(request_user(request), public_id, to_change=True)
    specialty = appointment.visit_type.specialty
    if appointment.status == AppointmentStatus.BOOKED:
        return redirect("mine:appointments")
    now = timezone.now()
    expired = appointment.status == AppointmentStatus.EXPIRED or (
        appointment.status == AppointmentStatus.HELD and appointment.hold_expires_at <= now  # type: ignore[operator]
    )
    if appointment.status not in (AppointmentStatus.HELD, AppointmentStatus.EXPIRED):
        raise Http404
    context = {
        "appointment": appointment,
        "times": appointment_times(appointment, request.user),
        "practitioner": _practitioner_name(appointment),
        "slots_url": _slots_url(specialty),
        "hold_minutes": settings.APPOINTMENT_HOLD_MINUTES,
    }
    if request.method == "POST" and not expired:
        try:
            appointment_confirm(appointment=appointment, by=request_user(request))
        except HoldExpired:
            expired = True
        except ValidationError as error:
            return render(
                request,
                "frontend/patient/appointment_confirm.html",
                {**context, "error": error.messages[0]},
                status=400,
            )
        else:
            messages.success(request, _("Listo: su cita quedó confirmada. Le enviaremos el enlace para entrar."))
            return redirect("mine:appointments")
    if expired:
        # A clear way back: nothing was booked, the time may be free again, pick again.
        status = 400 if request.method == "POST" else 200
        return render(request, "frontend/patient/appointment_confirm.html", {**context, "expired": True}, status=status)
    return render(request, "frontend/patient/appointment_confirm.html", context)


def _practitioner_name(appointment: Appointment) -> str:
    participant = (
        appointment.participants.filter(role=ParticipantRole.PRACTITIONER).select_related("user").order_by("pk").first()
    )
    return participant.user.full_name if participant and participant.user else ""


@never_cache
@require_http_methods(["GET", "POST"])
@patient_page
def cancel(request: HttpRequest, patient: Patient, public_id: UUID) -> HttpResponse:
    """Cancel with a confirmation step; the reason is the patient's request, with their words if they wish."""
    appointment = appointment_for(request_user(request), public_id, to_change=True)
    if appointment.status not in (AppointmentStatus.BOOKED, AppointmentStatus.HELD):
        messages.info(request, _("Esta cita ya no se puede cancelar."))
        return redirect("mine:appointments")
    context = {
        "appointment": appointment,
        "times": appointment_times(appointment, request.user),
        "practitioner": _practitioner_name(appointment),
    }
    if request.method == "GET":
        return render(request, "frontend/patient/appointment_cancel.html", {**context, "form": CancelForm()})
    form = CancelForm(request.POST)
    if form.is_valid():
        try:
            appointment_cancel(
                appointment=appointment,
                reason=CancelReason.PATIENT_REQUEST,
                note=form.cleaned_data["note"],
                by=request_user(request),
            )
        except ValidationError as error:
            form.add_error(None, error.messages)
        else:
            messages.success(request, _("Su cita fue cancelada."))
            return redirect("mine:appointments")
    return render(request, "frontend/patient/appointment_cancel.html", {**context, "form": form}, status=400)


@never_cache
@require_http_methods(["GET", "POST"])
@patient_page
def reschedule(request: HttpRequest, patient: Patient, public_id: UUID) -> HttpResponse:
    """Pick a new slot of the same visit type; the old time is freed only if the new one is booked."""
    appointment = appointment_for(request_user(request), public_id, to_change=True)
    if appointment.status != AppointmentStatus.BOOKED or appointment.start <= timezone.now():
        messages.info(request, _("Esta cita ya no se puede cambiar de horario."))
        return redirect("mine:appointments")
    extra = {
        "appointment": appointment,
        "times": appointment_times(appointment, request.user),
        "action": reverse("mine:appointment_reschedule", args=[appointment.public_id]),
    }
    specialty = appointment.visit_type.specialty

    def page(status: int = 200, error: str = "") -> HttpResponse:
        slots = _search(visit_type=appointment.visit_type)
        return _slots_page(request, specialty=specialty, slots=slots, status=status, error=error, **extra)

    if request.method == "GET":
        return page()
    form = SlotForm(request.POST)
    chosen = _chosen(form) if form.is_valid() else None
    if chosen is None or chosen[0].pk != appointment.visit_type_id:
        return page(400, _("No pudimos leer el horario elegido. Elija uno de la lista, por favor."))
    try:
        appointment_reschedule(
            appointment=appointment,
            start=form.cleaned_data["start"],
            by=request_user(request),
            practitioner=chosen[1],
        )
    except ParticipantBusy:
        return page(409, _("Usted ya tiene otra cita a esa hora. Elija otro horario, por favor."))
    except SlotTaken:
        return page(409, _("Ese horario acaba de ser tomado por otra persona. Elija otro de la lista, por favor."))
    except ValidationError as error:
        return page(400, error.messages[0])
    messages.success(request, _("Listo: cambiamos su cita al nuevo horario. Le enviaremos un enlace nuevo."))
    return redirect("mine:appointments")
