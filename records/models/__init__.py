"""Records' models: patients and identity, consent."""

from records.models.care import BreakGlassAccess, CareRelationship, CareSource
from records.models.consent import (
    ConsentDecision,
    ConsentDocument,
    ConsentKind,
    ConsentMethod,
    Decision,
)
from records.models.patients import (
    ClinicalHistoryNumber,
    DocumentType,
    DuplicateStatus,
    Insurance,
    Patient,
    PatientIdentifier,
    PossibleDuplicate,
    Sex,
)

__all__ = [
    "BreakGlassAccess",
    "CareRelationship",
    "CareSource",
    "ClinicalHistoryNumber",
    "ConsentDecision",
    "ConsentDocument",
    "ConsentKind",
    "ConsentMethod",
    "Decision",
    "DocumentType",
    "DuplicateStatus",
    "Insurance",
    "Patient",
    "PatientIdentifier",
    "PossibleDuplicate",
    "Sex",
]
