"""The practitioner's room of a video visit (VID-2, VID-3): who waits (admit or decline), the call, and beside it
the patient's chart header and the way into the note, so the note is written while they talk."""

from __future__ import annotations

import contextlib
import uuid

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.utils.translation import get_language
from django.views.decorators.http import require_GET

from accounts.access import AccessDenied, role_required
from accounts.models import Role, User
from records import cie10, medications
from records.access import chart_for
from scheduling.access import appointment_for
from scheduling.models import AppointmentStatus, ParticipantRole
from video.call_strings import call_strings
from video.models import RecordingStatus, VisitSession
from video.recording_access import recordings_listed

_HOST_ROLES = (ParticipantRole.PRACTITIONER, ParticipantRole.CONSULTED)


@role_required(Role.PRACTITIONER)
@require_GET
def room(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Only a practitioner or consulted specialist taking part in the appointment; anyone else gets the same
    404 as for a missing one. Both reads (the appointment, the chart) are gated and audited."""
    user = request.user
    assert isinstance(user, User)
    appointment = appointment_for(user, public_id)
    if not appointment.participants.filter(user=user, role__in=_HOST_ROLES, active=True).exists():
        raise AccessDenied
    patient, header, recordings = None, None, []
    # The call goes on without the chart for someone without a care relationship (the refusal is audited).
    with contextlib.suppress(AccessDenied):
        patient = chart_for(user, appointment.patient_id).patient
    encounter_id = VisitSession.objects.filter(appointment=appointment).values_list("encounter_id", flat=True).first()
    if patient is not None and encounter_id is not None:
        # The care team's way to the visit's recordings: the listing's gate and trail, then each download's.
        listed = recordings_listed(user, encounter_id=encounter_id)
        recordings = [recording for recording in listed if recording.status == RecordingStatus.STORED]
    if patient is not None:
        header = medications.chart_header(patient)
        english = (get_language() or "").startswith("en")
        for problem in header.problems:
            entry = cie10.lookup(problem.cie10_code)
            problem.title = (entry.title_en if english else entry.title_es) if entry else ""  # type: ignore[attr-defined]
    context = {
        "appointment": appointment,
        "public_id": appointment.public_id,
        "patient": patient,
        "header": header,
        "live": appointment.status in (AppointmentStatus.BOOKED, AppointmentStatus.IN_PROGRESS),
        "call_strings": call_strings(),
        "recordings": recordings,
    }
    response = render(request, "video/room.html", context)
    add_never_cache_headers(response)
    return response
