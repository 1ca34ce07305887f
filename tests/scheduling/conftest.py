"""Scheduling fixtures shared by this folder's tests (the clinic: a visit type and a practitioner's week)."""

from tests.scheduling.factories import clinic  # noqa: F401
