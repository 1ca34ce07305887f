"""The patient's appointments (SCH-3, mobile-first): book by specialty → slot → confirm within the hold, see
upcoming and past appointments, cancel with a reason, reschedule to another slot."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from scheduling.models import Appointment


def appointment_times(appointment: Appointment, viewer: Any) -> dict[str, Any]:
    """The start and end in the establishment's zone and, when the viewer's own zone differs, in theirs too."""
    establishment_zone = appointment.establishment.time_zone or "America/Lima"
    viewer_zone = (getattr(viewer, "time_zone", "") or "") if getattr(viewer, "is_authenticated", False) else ""
    zone = ZoneInfo(establishment_zone)
    times: dict[str, Any] = {
        "start": appointment.start.astimezone(zone),
        "end": appointment.end.astimezone(zone),
        "zone": establishment_zone,
        "viewer_start": None,
        "viewer_end": None,
        "viewer_zone": "",
    }
    if viewer_zone and viewer_zone != establishment_zone:
        theirs = ZoneInfo(viewer_zone)
        if appointment.start.astimezone(theirs).utcoffset() != times["start"].utcoffset():
            times.update(
                viewer_start=appointment.start.astimezone(theirs),
                viewer_end=appointment.end.astimezone(theirs),
                viewer_zone=viewer_zone,
            )
    return times
