"""Calendars: the coordinator's day and week per establishment or practitioner, today's overview (who is
waiting, who is late), and the practitioner's own day."""

from __future__ import annotations

import datetime as dt

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.access import role_required
from accounts.models import Role
from scheduling import selectors
from scheduling.forms import CalendarForm, DayForm, EstablishmentChoiceForm
from scheduling.models import ACTIVE_STATUSES, AppointmentStatus
from scheduling.views._common import (
    BOOKERS,
    day_bounds,
    establishments_query,
    practitioners_at,
    record_calendar_read,
    user_of,
    with_local_times,
    zone,
)


@role_required(*BOOKERS)
@require_GET
def calendar(request: HttpRequest) -> HttpResponse:
    """Day or week, for one establishment, optionally one practitioner. The query string holds ids and a date."""
    user = user_of(request)
    establishments = establishments_query(user)
    practitioners = practitioners_at(establishments)
    form = CalendarForm(
        request.GET or None, establishments=establishments, practitioners=practitioners, auto_id="cal_%s"
    )
    first = establishments.first()
    if request.GET and not form.is_valid():
        return render(request, "scheduling/calendar.html", {"form": form, "establishment": None}, status=400)
    data = form.cleaned_data if form.is_bound else {}
    establishment = data.get("establishment") or first
    if establishment is None:
        return render(request, "scheduling/calendar.html", {"form": form, "establishment": None})
    practitioner = data.get("practitioner")
    view = data.get("view") or "day"
    place = zone(establishment.time_zone)
    day = data.get("date") or timezone.now().astimezone(place).date()
    if view == "week":
        day = day - dt.timedelta(days=day.weekday())
        span = 7
    else:
        span = 1
    start, end = day_bounds(day, place, span)
    appointments = with_local_times(
        selectors.appointments_for_calendar(
            establishment=establishment, start=start, end=end, practitioner=practitioner
        ),
        user,
    )
    record_calendar_read(
        user, appointments=appointments, view=view, establishment=establishment, practitioner=practitioner
    )
    days = []
    for offset in range(span):
        current = day + dt.timedelta(days=offset)
        days.append({"date": current, "appointments": [a for a in appointments if a.local_start.date() == current]})
    step = dt.timedelta(days=span)
    base = {"establishment": establishment.pk, "view": view}
    if practitioner is not None:
        base["practitioner"] = practitioner.pk
    context = {
        "form": form,
        "establishment": establishment,
        "practitioner": practitioner,
        "view": view,
        "day": day,
        "last_day": day + dt.timedelta(days=span - 1),
        "days": days,
        "count": len(appointments),
        "previous": {**base, "date": (day - step).isoformat()},
        "next": {**base, "date": (day + step).isoformat()},
        "other_view": {**base, "view": "day" if view == "week" else "week", "date": day.isoformat()},
        "zone_name": establishment.time_zone,
        "viewer_zone": user.time_zone if user.time_zone and user.time_zone != establishment.time_zone else "",
    }
    return render(request, "scheduling/calendar.html", context)


@role_required(*BOOKERS)
@require_GET
def today(request: HttpRequest) -> HttpResponse:
    """The coordinator's desk: who is in the lobby, who is late, who is still to come today."""
    user = user_of(request)
    establishments = establishments_query(user)
    form = EstablishmentChoiceForm(request.GET or None, establishments=establishments, auto_id="today_%s")
    if request.GET and not form.is_valid():
        return render(request, "scheduling/today.html", {"form": form, "establishment": None}, status=400)
    establishment = (form.cleaned_data.get("establishment") if form.is_bound else None) or establishments.first()
    if establishment is None:
        return render(request, "scheduling/today.html", {"form": form, "establishment": None})
    now = timezone.now()
    rows = selectors.today_overview(establishment=establishment, now=now)
    for row in rows:
        row.appointment.waiting = row.waiting  # type: ignore[attr-defined]
        row.appointment.late = row.late  # type: ignore[attr-defined]
    appointments = with_local_times([row.appointment for row in rows], user)
    record_calendar_read(user, appointments=appointments, view="today", establishment=establishment)
    waiting = [a for a, row in zip(appointments, rows, strict=True) if row.waiting]
    late = [a for a, row in zip(appointments, rows, strict=True) if row.late]
    shown = {a.pk for a in waiting} | {a.pk for a in late}
    upcoming = [a for a in appointments if a.pk not in shown and a.status in ACTIVE_STATUSES and a.start >= now]
    closed = [a for a in appointments if a.pk not in shown and a not in upcoming]
    context = {
        "form": form,
        "establishment": establishment,
        "waiting": waiting,
        "late": late,
        "upcoming": upcoming,
        "closed": closed,
        "now": now.astimezone(zone(establishment.time_zone)),
        "zone_name": establishment.time_zone,
    }
    return render(request, "scheduling/today.html", context)


@role_required(Role.PRACTITIONER)
@require_GET
def my_day(request: HttpRequest) -> HttpResponse:
    """The practitioner's appointments of one day (today by default), each linking to the patient's chart."""
    user = user_of(request)
    establishments = establishments_query(user)
    first = establishments.first()
    own_zone = zone(user.time_zone or (first.time_zone if first else ""))
    form = DayForm(request.GET or None, auto_id="day_%s")
    day = timezone.now().astimezone(own_zone).date()
    status = 200
    if form.is_bound:
        if form.is_valid():
            day = form.cleaned_data.get("date") or day
        else:
            status = 400
    now = timezone.now()
    appointments = with_local_times(selectors.practitioner_day(user, day, own_zone), user)
    record_calendar_read(user, appointments=appointments, view="my_day", practitioner=user)
    for appointment in appointments:
        opened = getattr(appointment, "lobby_opened", False)
        active = appointment.status == AppointmentStatus.BOOKED
        appointment.waiting = active and opened and now < appointment.end  # type: ignore[attr-defined]
        appointment.late = active and not opened and appointment.start <= now  # type: ignore[attr-defined]
        appointment.own_start = appointment.start.astimezone(own_zone)  # type: ignore[attr-defined]
    context = {
        "form": form,
        "day": day,
        "is_today": day == now.astimezone(own_zone).date(),
        # The live waiting list (video's websocket, served by the same ASGI application).
        "waiting_list_socket": "/ws/waiting/",
        "appointments": appointments,
        "previous": (day - dt.timedelta(days=1)).isoformat(),
        "next": (day + dt.timedelta(days=1)).isoformat(),
        "zone_name": str(own_zone),
    }
    return render(request, "scheduling/my_day.html", context, status=status)
