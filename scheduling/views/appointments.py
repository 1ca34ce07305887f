"""Booking by coordinators (with patient search and a slot picker), teleinterconsulta, and the appointment page
with its actions: cancel, reschedule, no-show, resend or revoke a participant's join link.

Booking is a sequence of POSTs on one URL: find the patient (document or name, so nothing typed lands in a
URL) → choose what and when → pick a slot. The patient's id travels in a hidden field and is gated again on
every step. A slot taken meanwhile is a friendly message with the form kept (HTTP 409).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import AccessDenied, role_required
from accounts.models import Establishment, Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records import selectors as record_selectors
from records.forms import DocumentSearchForm, NameSearchForm
from records.models import Patient
from scheduling import joinlinks, notifications, services, slots
from scheduling.access import appointment_for, patient_for_booking
from scheduling.errors import SlotTaken
from scheduling.forms import (
    CancelForm,
    InterconsultationChoiceForm,
    InterconsultationSearchForm,
    RescheduleChoiceForm,
    RescheduleSearchForm,
    SlotChoiceForm,
    SlotSearchForm,
)
from scheduling.models import (
    ACTIVE_STATUSES,
    AppointmentParticipant,
    AppointmentStatus,
    CancelReason,
    JoinLink,
    ParticipantRole,
    ServiceType,
    VisitType,
)
from scheduling.views._common import (
    BOOKERS,
    establishments_query,
    practitioners_at,
    user_of,
    viewer_zone,
    with_local_times,
    zone,
)

DETAIL_ROLES = (Role.COORDINATOR, Role.CLINIC_ADMIN, Role.PRACTITIONER)
SEARCH_DAYS = 7
MAX_ID = 2**31 - 1


# --- patient search, shared by both booking pages -------------------------------------------------------------


def _search_patients(request: HttpRequest, user: User, step: str) -> tuple[dict[str, Any], int]:
    """The first step: the same search as records' page, through the same selectors (blocked records are out)."""
    document_form = DocumentSearchForm(prefix="doc")
    name_form = NameSearchForm(prefix="name")
    results: list[Patient] | None = None
    if step == "document":
        document_form = DocumentSearchForm(request.POST, prefix="doc")
        if document_form.is_valid():
            data = document_form.cleaned_data
            country = data["issuing_country"] if data["document_type"] == "passport" else "PER"
            results = record_selectors.patient_search_by_document(
                data["document_type"], data["number"], country, viewer=user
            )
    elif step == "name":
        name_form = NameSearchForm(request.POST, prefix="name")
        if name_form.is_valid():
            results = record_selectors.patient_search_by_name(name_form.cleaned_data["name"], viewer=user)
    if results is not None:
        audit.record(
            action=AuditAction.PATIENT_SEARCHED,
            purpose=Purpose.OPERATIONS,
            actor_user_id=user.pk,
            actor_role=user.role,
            patient_id=results[0].pk if step == "document" and results else None,
            details={"by": step, "results": [p.pk for p in results][:50], "for": "booking"},
        )
    context = {"document_form": document_form, "name_form": name_form, "results": results}
    return context, 200 if results is not None or step not in ("document", "name") else 400


def _posted_id(request: HttpRequest, name: str) -> int | None:
    value = request.POST.get(name, "")
    if not value.isdigit() or len(value) > 10 or int(value) > MAX_ID:
        return None
    return int(value)


def _booking_patient(request: HttpRequest, user: User) -> Patient:
    patient_id = _posted_id(request, "patient")
    if patient_id is None:
        raise AccessDenied
    return patient_for_booking(user, patient_id)


def _initial_range(place: Establishment | None) -> dict[str, dt.date]:
    today = timezone.now().astimezone(zone(place.time_zone if place else "")).date()
    return {"date_from": today, "date_until": today + dt.timedelta(days=SEARCH_DAYS)}


def _range_utc(data: dict[str, Any], place: Establishment) -> tuple[dt.datetime, dt.datetime]:
    tz = zone(place.time_zone)
    start = dt.datetime.combine(data["date_from"], dt.time.min, tzinfo=tz)
    end = dt.datetime.combine(data["date_until"] + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def _slot_rows(found: list[slots.Slot], place: Establishment, viewer: User) -> list[dict[str, Any]]:
    names = dict(User.objects.filter(pk__in={s.practitioner_id for s in found}).values_list("pk", "full_name"))
    own = viewer_zone(viewer, place.time_zone)
    tz = zone(place.time_zone)
    return [
        {
            "start_iso": s.start.astimezone(dt.UTC).isoformat(),
            "local_start": s.start.astimezone(tz),
            "local_end": s.end.astimezone(tz),
            "viewer_start": s.start.astimezone(own) if own else None,
            "practitioner_id": s.practitioner_id,
            "practitioner_name": names.get(s.practitioner_id, ""),
        }
        for s in found
    ]


def _error_message(error: ValidationError) -> str:
    return error.messages[0] if error.messages else _("No se pudo completar la operación de agenda.")


# --- booking ------------------------------------------------------------------------------------------------------


@role_required(*BOOKERS)
@require_http_methods(["GET", "POST"])
def book(request: HttpRequest) -> HttpResponse:
    user = user_of(request)
    establishments = establishments_query(user)
    visit_types = (
        VisitType.objects.filter(establishment__in=establishments, is_active=True)
        .exclude(service_type=ServiceType.TELEINTERCONSULTA)
        .select_related("establishment")
        .order_by("specialty", "name")
    )
    practitioners = practitioners_at(establishments)
    step = request.POST.get("step", "") if request.method == "POST" else ""
    context, status = _search_patients(request, user, step)
    context.update(step=step, patient=None, search_form=None, slots=None, booking_error="")
    if step in ("patient", "slots", "book"):
        patient = _booking_patient(request, user)
        search_form = SlotSearchForm(
            request.POST if step != "patient" else None,
            initial=_initial_range(establishments.first()),
            visit_types=visit_types,
            practitioners=practitioners,
        )
        context.update(patient=patient, search_form=search_form)
        if step != "patient":
            if not search_form.is_valid():
                return render(request, "scheduling/book.html", context, status=400)
            data = search_form.cleaned_data
            visit_type: VisitType = data["visit_type"]
            start, end = _range_utc(data, visit_type.establishment)

            def search() -> list[dict[str, Any]]:
                found = slots.find_slots(
                    visit_type=visit_type,
                    practitioner=data.get("practitioner"),
                    establishment=visit_type.establishment,
                    start=start,
                    end=end,
                )
                return _slot_rows(found, visit_type.establishment, user)

            if step == "book":
                choice = SlotChoiceForm(request.POST)
                chosen = None
                if choice.is_valid():
                    chosen = practitioners.filter(
                        pk=choice.cleaned_data["slot_practitioner"],
                        memberships__establishment=visit_type.establishment,
                    ).first()
                if chosen is None:
                    context.update(booking_error=_("Elija un horario de la lista."), slots=search())
                    return render(request, "scheduling/book.html", context, status=400)
                try:
                    appointment = services.appointment_book(
                        visit_type=visit_type,
                        practitioner=chosen,
                        patient=patient,
                        start=choice.cleaned_data["start"],
                        booked_by=user,
                    )
                except SlotTaken as error:
                    context.update(booking_error=_error_message(error), slots=search())
                    return render(request, "scheduling/book.html", context, status=409)
                except ValidationError as error:
                    context.update(booking_error=_error_message(error), slots=search())
                    return render(request, "scheduling/book.html", context, status=400)
                messages.success(request, _("Cita reservada."))
                return redirect("scheduling:appointment", public_id=appointment.public_id)
            context.update(slots=search(), visit_type=visit_type)
    return render(request, "scheduling/book.html", context, status=status)


@role_required(*BOOKERS)
@require_http_methods(["GET", "POST"])
def book_interconsultation(request: HttpRequest) -> HttpResponse:
    """Teleinterconsulta (SCH-5): the patient, the requesting practitioner at one of our establishments, the
    consulted specialist at another (maybe in another zone), an optional interpreter; a common free time."""
    user = user_of(request)
    establishments = establishments_query(user)
    visit_types = (
        VisitType.objects.filter(
            establishment__in=establishments, is_active=True, service_type=ServiceType.TELEINTERCONSULTA
        )
        .select_related("establishment")
        .order_by("specialty", "name")
    )
    all_practitioners = User.objects.filter(role=Role.PRACTITIONER, is_active=True).order_by("full_name")
    staff = User.objects.filter(role__in=[Role.PRACTITIONER, Role.COORDINATOR], is_active=True).order_by("full_name")
    step = request.POST.get("step", "") if request.method == "POST" else ""
    context, status = _search_patients(request, user, step)
    context.update(step=step, patient=None, search_form=None, times=None, booking_error="")
    if step in ("patient", "times", "book"):
        patient = _booking_patient(request, user)
        form = InterconsultationSearchForm(
            request.POST if step != "patient" else None,
            initial=_initial_range(establishments.first()),
            visit_types=visit_types,
            own_establishments=establishments,
            all_establishments=Establishment.objects.filter(is_active=True).order_by("name"),
            practitioners=all_practitioners,
            staff=staff,
        )
        context.update(patient=patient, search_form=form)
        if step != "patient":
            if not form.is_valid():
                return render(request, "scheduling/interconsultation.html", context, status=400)
            data = form.cleaned_data
            origin: Establishment = data["requesting_establishment"]
            remote: Establishment = data["consulted_establishment"]
            start, end = _range_utc(data, origin)

            def search() -> list[dict[str, Any]]:
                found = slots.common_free_times(
                    practitioners=[(data["requesting"], origin), (data["consulted"], remote)],
                    patient=patient,
                    interpreter=data.get("interpreter"),
                    duration_minutes=data["visit_type"].duration_minutes,
                    start=start,
                    end=end,
                )
                origin_zone, remote_zone = zone(origin.time_zone), zone(remote.time_zone)
                return [
                    {
                        "start_iso": lo.astimezone(dt.UTC).isoformat(),
                        "origin_start": lo.astimezone(origin_zone),
                        "origin_end": hi.astimezone(origin_zone),
                        "remote_start": lo.astimezone(remote_zone),
                        "remote_end": hi.astimezone(remote_zone),
                    }
                    for lo, hi in found
                ]

            context.update(origin=origin, remote=remote, same_zone=origin.time_zone == remote.time_zone)
            if step == "book":
                choice = InterconsultationChoiceForm(request.POST)
                if not choice.is_valid():
                    context.update(booking_error=_("Elija un horario de la lista."), times=search())
                    return render(request, "scheduling/interconsultation.html", context, status=400)
                try:
                    appointment = services.appointment_book_interconsultation(
                        visit_type=data["visit_type"],
                        patient=patient,
                        requesting=data["requesting"],
                        requesting_establishment=origin,
                        consulted=data["consulted"],
                        consulted_establishment=remote,
                        interpreter=data.get("interpreter"),
                        start=choice.cleaned_data["start"],
                        booked_by=user,
                    )
                except SlotTaken as error:
                    context.update(booking_error=_error_message(error), times=search())
                    return render(request, "scheduling/interconsultation.html", context, status=409)
                except ValidationError as error:
                    context.update(booking_error=_error_message(error), times=search())
                    return render(request, "scheduling/interconsultation.html", context, status=400)
                messages.success(request, _("Teleinterconsulta reservada."))
                return redirect("scheduling:appointment", public_id=appointment.public_id)
            context.update(times=search())
    return render(request, "scheduling/interconsultation.html", context, status=status)


# --- one appointment ----------------------------------------------------------------------------------------------


def _detail_context(user: User, appointment: Any, **extra: Any) -> dict[str, Any]:
    with_local_times([appointment], user)
    participants = list(
        AppointmentParticipant.objects.filter(appointment=appointment)
        .select_related("user", "patient", "establishment")
        .order_by("pk")
    )
    live = {
        link.participant_id: link
        for link in JoinLink.objects.filter(participant__appointment=appointment, revoked_at__isnull=True)
    }
    for participant in participants:
        participant.live_link = live.get(participant.pk)  # type: ignore[attr-defined]
    is_booker = user.role in BOOKERS
    is_participant = any(p.user_id == user.pk for p in participants)
    active = appointment.status in ACTIVE_STATUSES
    now = timezone.now()
    context = {
        "appointment": appointment,
        "patient": appointment.patient,
        "participants": participants,
        "is_booker": is_booker,
        "may_change": active and (is_booker or is_participant),
        "may_mark_no_show": appointment.status == AppointmentStatus.BOOKED
        and appointment.start <= now
        and (is_booker or is_participant),
        "chart_link": user.role == Role.PRACTITIONER and is_participant,
        "cancel_form": CancelForm(auto_id="cancel_%s"),
        "rescheduled_to": getattr(appointment, "rescheduled_to", None)
        if appointment.status == AppointmentStatus.RESCHEDULED
        else None,
        "reason_label": CancelReason(appointment.cancel_reason).label if appointment.cancel_reason else "",
    }
    context.update(extra)
    return context


def _appointment(user: User, public_id: uuid.UUID, *, to_change: bool = False) -> Any:
    appointment = appointment_for(user, public_id, to_change=to_change)
    # The gate loads the establishment and visit type; the page also names the patient.
    appointment.patient = Patient.objects.only(
        "pk", "given_names", "paternal_surname", "maternal_surname", "birth_date"
    ).get(pk=appointment.patient_id)
    return appointment


@role_required(*DETAIL_ROLES)
@require_http_methods(["GET"])
def appointment_detail(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    user = user_of(request)
    appointment = _appointment(user, public_id)
    return render(request, "scheduling/appointment.html", _detail_context(user, appointment))


@role_required(*DETAIL_ROLES)
@require_http_methods(["GET", "POST"])
def appointment_cancel(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    user = user_of(request)
    appointment = _appointment(user, public_id, to_change=True)
    form = CancelForm(request.POST if request.method == "POST" else None, auto_id="cancel_%s")
    status = 200
    if form.is_bound:
        status = 400
        if form.is_valid():
            try:
                services.appointment_cancel(
                    appointment=appointment,
                    reason=CancelReason(form.cleaned_data["reason"]),
                    note=form.cleaned_data["note"],
                    by=user,
                )
            except ValidationError as error:
                form.add_error(None, _error_message(error))
            else:
                messages.success(request, _("Cita cancelada."))
                return redirect("scheduling:appointment", public_id=appointment.public_id)
    context = _detail_context(user, appointment, cancel_form=form)
    return render(request, "scheduling/appointment_cancel.html", context, status=status)


@role_required(*DETAIL_ROLES)
@require_POST
def appointment_no_show(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    user = user_of(request)
    appointment = _appointment(user, public_id, to_change=True)
    try:
        services.appointment_mark_no_show(appointment=appointment, by=user)
    except ValidationError as error:
        context = _detail_context(user, appointment, action_error=_error_message(error))
        return render(request, "scheduling/appointment.html", context, status=400)
    messages.success(request, _("Anotado: el paciente no se presentó."))
    return redirect("scheduling:appointment", public_id=appointment.public_id)


def _practitioner_of(appointment: Any) -> User | None:
    seat = (
        AppointmentParticipant.objects.filter(
            appointment=appointment, role=ParticipantRole.PRACTITIONER, user__isnull=False
        )
        .select_related("user")
        .first()
    )
    return seat.user if seat else None


@role_required(*DETAIL_ROLES)
@require_http_methods(["GET", "POST"])
def appointment_reschedule(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Another time with the same practitioner and visit type. The old appointment ends, a new one begins."""
    user = user_of(request)
    appointment = _appointment(user, public_id, to_change=True)
    place = appointment.establishment
    step = request.POST.get("step", "") if request.method == "POST" else ""
    form = RescheduleSearchForm(
        request.POST if step else request.GET or None, initial=_initial_range(place), auto_id="re_%s"
    )
    practitioner = _practitioner_of(appointment)
    context = _detail_context(user, appointment, search_form=form, slots=None, booking_error="")
    if appointment.status not in ACTIVE_STATUSES or practitioner is None:
        context["booking_error"] = _("Esta cita ya no se puede modificar.")
        return render(request, "scheduling/appointment_reschedule.html", context, status=400 if step else 200)
    if not form.is_bound:
        return render(request, "scheduling/appointment_reschedule.html", context)
    if not form.is_valid():
        return render(request, "scheduling/appointment_reschedule.html", context, status=400)
    start, end = _range_utc(form.cleaned_data, place)

    def search() -> list[dict[str, Any]]:
        found = slots.find_slots(
            visit_type=appointment.visit_type, practitioner=practitioner, establishment=place, start=start, end=end
        )
        return _slot_rows(found, place, user)

    if step == "book":
        choice = RescheduleChoiceForm(request.POST)
        if not choice.is_valid():
            context.update(booking_error=_("Elija un horario de la lista."), slots=search())
            return render(request, "scheduling/appointment_reschedule.html", context, status=400)
        try:
            new = services.appointment_reschedule(appointment=appointment, start=choice.cleaned_data["start"], by=user)
        except SlotTaken as error:
            context.update(booking_error=_error_message(error), slots=search())
            return render(request, "scheduling/appointment_reschedule.html", context, status=409)
        except ValidationError as error:
            context.update(booking_error=_error_message(error), slots=search())
            return render(request, "scheduling/appointment_reschedule.html", context, status=400)
        messages.success(request, _("Cita reprogramada."))
        return redirect("scheduling:appointment", public_id=new.public_id)
    context.update(slots=search())
    return render(request, "scheduling/appointment_reschedule.html", context)


def _participant(appointment: Any, participant_id: int) -> AppointmentParticipant:
    participant = (
        AppointmentParticipant.objects.filter(appointment=appointment, pk=participant_id, active=True)
        .select_related("appointment")
        .first()
    )
    if participant is None:
        raise AccessDenied
    return participant


@role_required(*BOOKERS)
@require_POST
def join_link_resend(request: HttpRequest, public_id: uuid.UUID, participant_id: int) -> HttpResponse:
    """Send the participant their link again (a new one if it was revoked); the message leaves after commit."""
    user = user_of(request)
    appointment = _appointment(user, public_id, to_change=True)
    if appointment.status not in ACTIVE_STATUSES:
        context = _detail_context(user, appointment, action_error=_("Esta cita ya no se puede modificar."))
        return render(request, "scheduling/appointment.html", context, status=400)
    participant = _participant(appointment, participant_id)
    with transaction.atomic():
        if not JoinLink.objects.filter(participant=participant, revoked_at__isnull=True).exists():
            joinlinks.join_link_issue(participant=participant, by=user)
        transaction.on_commit(lambda: notifications.join_link_send(participant_id=participant.pk))
    messages.success(request, _("Enlace enviado de nuevo."))
    return redirect("scheduling:appointment", public_id=appointment.public_id)


@role_required(*BOOKERS)
@require_POST
def join_link_revoke(request: HttpRequest, public_id: uuid.UUID, participant_id: int) -> HttpResponse:
    user = user_of(request)
    appointment = _appointment(user, public_id, to_change=True)
    participant = _participant(appointment, participant_id)
    joinlinks.join_link_revoke(participant=participant, by=user)
    messages.success(request, _("Enlace anulado. Ya no abre la cita."))
    return redirect("scheduling:appointment", public_id=appointment.public_id)
