"""care_relationship_start: one relationship per source, audited when it is created, never touched again by a
second start; bad input refused with nothing written."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditEvent
from records.care import care_relationship_start
from records.models import CareRelationship, CareSource
from tests.frontend.conftest import register

pytestmark = pytest.mark.django_db


def _start(personas, patient, **changes):
    now = timezone.now()
    arguments = {
        "patient": patient,
        "practitioner": personas.practitioner,
        "source": CareSource.REFERRAL,
        "source_id": "77",
        "valid_from": now,
        "valid_until": now + dt.timedelta(days=30),
        "created_by": personas.coordinator,
    } | changes
    return care_relationship_start(**arguments)


def _started(patient) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditAction.CARE_RELATIONSHIP_STARTED, patient_id=patient.pk))


def test_a_relationship_is_created_once_per_source_and_audited_once(personas):
    patient = register(personas)
    first = _start(personas, patient)
    assert first.pk is not None and not first._state.adding
    stored = CareRelationship.objects.get(pk=first.pk)
    assert (stored.practitioner_id, stored.source, stored.source_id) == (personas.practitioner.pk, "referral", "77")
    assert stored.valid_until == first.valid_until and stored.created_by_id == personas.coordinator.pk
    [event] = _started(patient)
    assert (event.object_id, event.details) == (
        str(first.pk),
        {"source": "referral", "practitioner": personas.practitioner.pk},
    )
    # Started again from the same source (a retry, the other participant): the same row, left as it was.
    again = _start(personas, patient, valid_until=timezone.now() + dt.timedelta(days=90))
    assert again.pk == first.pk and again.valid_until == stored.valid_until
    assert len(_started(patient)) == 1
    # Another source is another relationship.
    other = _start(personas, patient, source_id="78")
    assert other.pk != first.pk and len(_started(patient)) == 2


def test_bad_input_is_refused_and_nothing_is_written(personas):
    patient = register(personas)
    with pytest.raises(ValueError):
        _start(personas, patient, practitioner=personas.coordinator)
    now = timezone.now()
    with pytest.raises(IntegrityError):
        _start(personas, patient, valid_from=now, valid_until=now)
    # Its savepoint rolled back: the caller's transaction goes on, and nothing of either attempt is there.
    assert not CareRelationship.objects.filter(patient=patient).exists()
    assert _started(patient) == []
