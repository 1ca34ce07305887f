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
    LegalHold,
    LegalRepresentative,
    Patient,
    PatientIdentifier,
    PatientRevision,
    PossibleDuplicate,
    RepresentativeRelationship,
    Sex,
)
from records.models.rights import DataRightsRequest, RightsKind, RightsStatus

__all__ = [
    "BreakGlassAccess",
    "CareRelationship",
    "CareSource",
    "ClinicalHistoryNumber",
    "ConsentDecision",
    "ConsentDocument",
    "ConsentKind",
    "ConsentMethod",
    "DataRightsRequest",
    "Decision",
    "DocumentType",
    "DuplicateStatus",
    "Insurance",
    "LegalHold",
    "LegalRepresentative",
    "Patient",
    "PatientIdentifier",
    "PatientRevision",
    "PossibleDuplicate",
    "RepresentativeRelationship",
    "RightsKind",
    "RightsStatus",
    "Sex",
]
