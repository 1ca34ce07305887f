"""Start the encounter of a booked appointment from the practitioner's day (records cannot see appointments,
so this one view lives here and calls records' services with the appointment's public id)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.access import AccessDenied, role_required
from accounts.models import Role
from records.encounters import encounter_start
from records.models import ParticipantRole as EncounterRole
from records.notes import note_create
from scheduling.access import appointment_for
from scheduling.models import AppointmentParticipant, AppointmentStatus, ParticipantRole
from scheduling.views._common import user_of

# Who takes part in the visit as what, in the encounter's words.
_ROLES = {ParticipantRole.PRACTITIONER: EncounterRole.ATTENDING, ParticipantRole.CONSULTED: EncounterRole.CONSULTANT}


@role_required(Role.PRACTITIONER)
@require_POST
def encounter_start_view(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The practitioner starts (or rejoins) the visit's encounter and lands in their note. Only a practitioner
    who takes part in a booked or running appointment; anyone else gets the same 404 as a missing one."""
    user = user_of(request)
    appointment = appointment_for(user, public_id)
    participant = AppointmentParticipant.objects.filter(
        appointment=appointment, user=user, active=True, role__in=list(_ROLES)
    ).first()
    if participant is None or appointment.status not in (AppointmentStatus.BOOKED, AppointmentStatus.IN_PROGRESS):
        raise AccessDenied
    try:
        encounter = encounter_start(
            patient=appointment.patient,
            appointment_ref=str(appointment.public_id),
            service_type=appointment.service_type,
            modality_planned=appointment.modality,
            origin_establishment=appointment.establishment,
            participants=[(user, _ROLES[ParticipantRole(participant.role)], participant.establishment)],
            by=user,
        )
        note = note_create(encounter=encounter, author=user)
    except ValidationError as error:
        messages.error(request, error.messages[0] if error.messages else _("No se pudo iniciar la atención."))
        return redirect("scheduling:my_day")
    return redirect("records:note", note_id=note.pk)
