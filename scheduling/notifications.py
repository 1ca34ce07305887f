"""Appointment notifications (SCH-8): queued for the background worker, never sent inside a request."""

from __future__ import annotations


def appointment_event(*, appointment_id: int, event: str) -> None:
    """Queue the messages an appointment change calls for (booked, rescheduled, cancelled)."""


def join_link_send(*, participant_id: int) -> None:
    """Queue a message carrying the participant's current join link."""
