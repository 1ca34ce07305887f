"""The patient's own data as a portable bundle (JSON) and a readable document (PDF): SEC-4 access and
portability. Callers gate and audit; this module only gathers and renders."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.utils import timezone
from fpdf import FPDF

from audit.models import AuditEvent
from records.models import (
    CareRelationship,
    ClinicalHistoryNumber,
    ConsentDecision,
    DataRightsRequest,
    LegalRepresentative,
    Patient,
    PatientIdentifier,
)

FORMAT = "teleconsult.patient-export/1"


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value else None


def patient_bundle(patient: Patient) -> dict[str, Any]:
    """Everything Teleconsult holds about the patient that they are entitled to receive."""
    return {
        "format": FORMAT,
        "generated_at": timezone.now().isoformat(),
        "patient": {
            "id": patient.pk,
            "given_names": patient.given_names,
            "paternal_surname": patient.paternal_surname,
            "maternal_surname": patient.maternal_surname,
            "sex": patient.sex,
            "birth_date": _iso(patient.birth_date),
            "address": patient.address,
            "phone": patient.phone,
            "email": patient.email,
            "insurance": patient.insurance,
            "insurance_number": patient.insurance_number,
            "emergency_contact": {"name": patient.emergency_contact_name, "phone": patient.emergency_contact_phone},
        },
        "identifiers": [
            {"type": i.document_type, "country": i.issuing_country, "number": i.value}
            for i in PatientIdentifier.objects.filter(patient=patient).order_by("pk")
        ],
        "legal_representatives": [
            {
                "name": r.name,
                "document_type": r.document_type,
                "document_number": r.document_number,
                "relationship": r.relationship,
                "phone": r.phone,
                "valid_from": _iso(r.valid_from),
                "valid_until": _iso(r.valid_until),
            }
            for r in LegalRepresentative.objects.filter(patient=patient).order_by("pk")
        ],
        "clinical_history_numbers": [
            {"establishment": h.establishment.name, "renipress": h.establishment.renipress_code, "number": h.number}
            for h in ClinicalHistoryNumber.objects.filter(patient=patient).select_related("establishment")
        ],
        "consents": [
            {
                "kind": c.kind,
                "decision": c.decision,
                "version": c.document.version,
                "language": c.document.language,
                "text_sha256": c.text_sha256,
                "method": c.method,
                "decided_at": _iso(c.decided_at),
                "valid_until": _iso(c.valid_until),
            }
            for c in ConsentDecision.objects.filter(patient=patient).select_related("document").order_by("decided_at")
        ],
        "care_team": [
            {
                "practitioner_id": r.practitioner_id,
                "source": r.source,
                "from": _iso(r.valid_from),
                "until": _iso(r.valid_until),
                "ended_at": _iso(r.ended_at),
            }
            for r in CareRelationship.objects.filter(patient=patient).order_by("valid_from")
        ],
        "rights_requests": [
            {"kind": r.kind, "status": r.status, "filed_at": _iso(r.filed_at), "due_date": _iso(r.effective_due_date)}
            for r in DataRightsRequest.objects.filter(patient=patient).order_by("filed_at")
        ],
        "access_log": [
            {"at": _iso(e.occurred_at), "action": e.action, "actor_user_id": e.actor_user_id, "role": e.actor_role}
            for e in AuditEvent.objects.filter(patient_id=patient.pk).order_by("occurred_at")[:5000]
        ],
    }


def bundle_json(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle, ensure_ascii=False, indent=2).encode("utf-8")


class _Document(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.cell(0, 8, f"Teleconsult - {self.page_no()}/{{nb}}", align="C")


def bundle_pdf(bundle: dict[str, Any]) -> bytes:
    """A plain, readable rendering of the bundle (Spanish headings; the core font covers Spanish accents)."""
    pdf = _Document(format="A4")
    pdf.set_title("Mis datos personales")
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=16)
    pdf.cell(0, 10, "Mis datos personales en Teleconsult", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    pdf.cell(0, 6, f"Generado: {bundle['generated_at']}", new_x="LMARGIN", new_y="NEXT")

    def section(title: str, rows: list[tuple[str, Any]]) -> None:
        pdf.ln(3)
        pdf.set_font("Helvetica", style="B", size=12)
        pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        if not rows:
            pdf.multi_cell(0, 6, "(sin registros)", new_x="LMARGIN", new_y="NEXT")
        for label, value in rows:
            text = f"{label}: {value if value not in (None, '') else '-'}"
            pdf.multi_cell(0, 6, text.encode("latin-1", "replace").decode("latin-1"), new_x="LMARGIN", new_y="NEXT")

    p = bundle["patient"]
    section(
        "Datos de identificación",
        [
            ("Nombres", p["given_names"]),
            ("Apellidos", f"{p['paternal_surname']} {p['maternal_surname']}".strip()),
            ("Sexo", p["sex"]),
            ("Fecha de nacimiento", p["birth_date"]),
            ("Dirección", p["address"]),
            ("Teléfono", p["phone"]),
            ("Correo", p["email"]),
            ("Seguro", f"{p['insurance']} {p['insurance_number'] or ''}".strip()),
        ]
        + [(f"Documento ({i['type']}, {i['country']})", i["number"]) for i in bundle["identifiers"]],
    )
    section(
        "Historias clínicas",
        [
            (f"{h['establishment']} (RENIPRESS {h['renipress']})", h["number"])
            for h in bundle["clinical_history_numbers"]
        ],
    )
    section(
        "Consentimientos",
        [(f"{c['decided_at'][:16]} {c['kind']} v{c['version']}", c["decision"]) for c in bundle["consents"]],
    )
    section(
        "Solicitudes de derechos (Ley 29733)",
        [
            (f"{r['filed_at'][:10]} {r['kind']}", f"{r['status']}, plazo {r['due_date']}")
            for r in bundle["rights_requests"]
        ],
    )
    section(
        "Accesos a su historia",
        [
            (e["at"][:16], f"{e['action']} (usuario #{e['actor_user_id']}, {e['role']})")
            for e in bundle["access_log"][:500]
        ],
    )
    return bytes(pdf.output())
