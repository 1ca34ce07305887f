"""FHIR R4 renderings of records' data (CON-5; INT-1 builds the API on these)."""

from __future__ import annotations

from fhir.resources.R4B.consent import Consent

from records.models import ConsentDecision, ConsentKind, Decision

# Scope per HL7's consentscope code system: privacy for data use, treatment for care itself.
# Keyed by the stored kind (ConsentKind members are those strings).
_SCOPE: dict[str, str] = {
    ConsentKind.TELEMEDICINE: "treatment",
    ConsentKind.DATA_PROCESSING: "patient-privacy",
    ConsentKind.RECORDING_VIDEO: "patient-privacy",
    ConsentKind.RECORDING_AUDIO: "patient-privacy",
    ConsentKind.RECORDING_IMAGES: "patient-privacy",
    ConsentKind.SHARING: "patient-privacy",
}
_METHOD_CODE = {"typed_name": "typed", "drawn_signature": "signature", "verbal_witnessed": "verbal"}


def consent_resource(decision: ConsentDecision) -> Consent:
    """One decision as a FHIR R4 Consent: a grant is `permit`, a revocation is `deny` (status inactive)."""
    document = decision.document
    granted = decision.decision == Decision.GRANT
    provision: dict = {"type": "permit" if granted else "deny", "period": {"start": decision.decided_at.isoformat()}}
    if decision.valid_until:
        provision["period"]["end"] = decision.valid_until.isoformat()
    return Consent.model_validate(
        {
            "resourceType": "Consent",
            "id": f"consent-{decision.pk}",
            "status": "active" if granted else "inactive",
            "scope": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": _SCOPE[decision.kind]}
                ]
            },
            "category": [
                {"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Consent Document"}]}
            ],
            "patient": {"reference": f"Patient/{decision.patient_id}"},
            "dateTime": decision.decided_at.isoformat(),
            "identifier": [
                {"system": "urn:teleconsult:consent-decision", "value": str(decision.pk)},
                {"system": "urn:teleconsult:consent-text-sha256", "value": decision.text_sha256},
            ],
            "policy": [{"uri": f"urn:teleconsult:consent:{decision.kind}:v{document.version}:{document.language}"}],
            "verification": [
                {
                    "verified": True,
                    "verificationDate": decision.decided_at.isoformat(),
                    "verifiedWith": {"display": _METHOD_CODE[decision.method]},
                }
            ],
            "provision": provision,
        }
    )
