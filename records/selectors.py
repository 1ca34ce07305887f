"""Reads for patients: exact search by document (through the blind index) and search by name prefix."""

from __future__ import annotations

from django.db.models import QuerySet

from records.identifiers import document_lookup, normalise_document
from records.models import Patient
from records.services import search_name


def patient_by_document(document_type: str, number: str, issuing_country: str = "PER") -> Patient | None:
    """Exact match on an identity document; the database compares HMACs, never plaintext."""
    normalised, country = normalise_document(document_type, number, issuing_country)
    return (
        Patient.objects.filter(identifiers__lookup=document_lookup(document_type, normalised, country))
        .distinct()
        .first()
    )


def patients_by_name_prefix(text: str, *, limit: int = 50) -> QuerySet[Patient]:
    """Patients whose normalised "SURNAME SURNAME GIVEN NAMES" starts with the text typed."""
    prefix = search_name(text)
    if len(prefix) < 2:
        return Patient.objects.none()
    return Patient.objects.filter(search_name__startswith=prefix, blocked_at__isnull=True).order_by(
        "search_name", "pk"
    )[:limit]
