"""Reads of the video rooms: who is waiting for a practitioner (the day list), who is in a visit."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from scheduling.models import ParticipantRole
from video.models import LIVE_STATES, Presence, PresenceState

_HOST_ROLES = (ParticipantRole.PRACTITIONER, ParticipantRole.CONSULTED)


def waiting_for(practitioner: User) -> QuerySet[Presence]:
    """Patients in the waiting room of visits this practitioner hosts, longest waiting first.

    Rows carry the appointment (its public id for links) and the participant, never anything clinical; the
    day list renders them and subscribes to video.services.practitioner_group(user id) for live changes."""
    return (
        Presence.objects.filter(
            state=PresenceState.WAITING,
            visit__appointment__participants__user=practitioner,
            visit__appointment__participants__role__in=_HOST_ROLES,
            visit__appointment__participants__active=True,
        )
        .select_related("visit__appointment", "participant")
        .order_by("joined_at")
        .distinct()
    )


def present_in(visit_id: int) -> QuerySet[Presence]:
    """Everyone holding a connection to the visit (waiting or in the call)."""
    return Presence.objects.filter(visit_id=visit_id, state__in=LIVE_STATES).select_related("participant")
