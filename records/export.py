"""The patient's own data as a portable bundle (JSON) and a readable document (PDF): SEC-4 access and
portability. Callers gate and audit; this module only gathers and renders."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.db.models import Prefetch
from django.utils import timezone
from fpdf import FPDF

from audit.models import AuditEvent
from records import cie10
from records.models import (
    Allergy,
    CareRelationship,
    ClinicalHistoryNumber,
    ClinicalNote,
    ConsentDecision,
    DataRightsRequest,
    Encounter,
    LegalRepresentative,
    Medication,
    NoteAmendment,
    NoteStatus,
    Patient,
    PatientIdentifier,
    Problem,
)

FORMAT = "teleconsult.patient-export/1"


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return value.isoformat() if value else None


def _establishment(establishment: Any) -> dict[str, str] | None:
    return {"name": establishment.name, "renipress": establishment.renipress_code} if establishment else None


def _encounters(patient: Patient) -> list[dict[str, Any]]:
    """Every encounter with its participants and its SIGNED notes (content and amendments). Drafts are work in
    progress of the professional, not yet part of the record, and are left out."""
    encounters = (
        Encounter.objects.filter(patient=patient)
        .select_related("origin_establishment", "consulted_establishment")
        .prefetch_related(
            "participants",
            Prefetch(
                "notes",
                queryset=ClinicalNote.objects.filter(status=NoteStatus.SIGNED)
                .prefetch_related(Prefetch("amendments", queryset=NoteAmendment.objects.order_by("created_at", "pk")))
                .order_by("signed_at", "pk"),
                to_attr="signed_notes",
            ),
        )
        .order_by("started_at", "pk")
    )
    rows = []
    for encounter in encounters:
        participants = list(encounter.participants.all())
        # Keyed so a note without a signer (signed_by_id None) looks up like any other.
        names: dict[int | None, str] = {p.user_id: p.full_name for p in participants}
        rows.append(
            {
                "id": encounter.pk,
                "service_type": encounter.service_type,
                "modality_planned": encounter.modality_planned,
                "modality_used": encounter.modality_used,
                "status": encounter.status,
                "started_at": _iso(encounter.started_at),
                "ended_at": _iso(encounter.ended_at),
                "establishment": _establishment(encounter.origin_establishment),
                "consulted_establishment": _establishment(encounter.consulted_establishment),
                "participants": [
                    {
                        "full_name": p.full_name,
                        "role": p.role,
                        "profession": p.profession,
                        "registry_body": p.registry_body,
                        "registry_number": p.registry_number,
                        "rne": p.rne,
                    }
                    for p in participants
                ],
                "notes": [
                    {
                        "id": note.pk,
                        "signed_at": _iso(note.signed_at),
                        "signed_by": names.get(note.signed_by_id, ""),
                        "content_sha256": note.content_sha256,
                        "content": json.loads(note.content),
                        "amendments": [
                            {
                                "created_at": _iso(a.created_at),
                                "author": a.author_name,
                                "registry": f"{a.author_registry_body} {a.author_registry_number}".strip(),
                                "reason": a.reason,
                                "text": a.text,
                                "content_sha256": a.content_sha256,
                            }
                            for a in note.amendments.all()
                        ],
                    }
                    for note in encounter.signed_notes
                ],
            }
        )
    return rows


def _problem_title(code: str) -> str:
    entry = cie10.lookup(code)
    return entry.title_es if entry else ""


def _clinical_lists(patient: Patient) -> dict[str, Any]:
    return {
        "allergies": [
            {
                "substance": a.substance,
                "reaction": a.reaction or "",
                "severity": a.severity,
                "status": a.status,
                "recorded_at": _iso(a.recorded_at),
            }
            for a in Allergy.objects.filter(patient=patient).order_by("recorded_at", "pk")
        ],
        "problems": [
            {
                "cie10_code": p.cie10_code,
                "cie10_title": _problem_title(p.cie10_code),
                "description": p.description or "",
                "status": p.status,
                "onset_date": _iso(p.onset_date),
                "recorded_at": _iso(p.recorded_at),
            }
            for p in Problem.objects.filter(patient=patient).order_by("recorded_at", "pk")
        ],
        # Current medication is status "active"; stopped ones are kept too (the patient is entitled to all).
        "medications": [
            {
                "drug": m.drug_name,
                "dose": m.dose or "",
                "source": m.source,
                "status": m.status,
                "started_on": _iso(m.started_on),
                "stopped_on": _iso(m.stopped_on),
                "recorded_at": _iso(m.recorded_at),
            }
            for m in Medication.objects.filter(patient=patient).order_by("recorded_at", "pk")
        ],
    }


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
        "encounters": _encounters(patient),
        **_clinical_lists(patient),
    }


def bundle_json(bundle: dict[str, Any]) -> bytes:
    return json.dumps(bundle, ensure_ascii=False, indent=2).encode("utf-8")


class _Document(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.cell(0, 8, f"Teleconsult - {self.page_no()}/{{nb}}", align="C")


# The note's sections in the norm's order, with the Spanish labels of the printed record.
_NOTE_TEXTS = (
    ("reason", "Motivo de consulta"),
    ("anamnesis.illness_duration", "Tiempo de enfermedad"),
    ("anamnesis.onset", "Forma de inicio"),
    ("anamnesis.course", "Curso"),
    ("anamnesis.story", "Relato de la enfermedad"),
    ("history", "Antecedentes"),
    ("examination.text", "Examen clínico"),
)
_NOTE_CLOSING = (
    ("plan", "Plan de trabajo"),
    ("treatment", "Tratamiento"),
    ("indications", "Indicaciones"),
    ("next_appointment", "Próxima cita"),
)


def _path(content: dict[str, Any], path: str) -> Any:
    value: Any = content
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _encounter_rows(section: Any, encounter: dict[str, Any]) -> None:
    professionals = ", ".join(
        f"{p['full_name']} ({p['registry_body']} {p['registry_number']})" for p in encounter["participants"]
    )
    establishment = encounter["establishment"] or {}
    section(
        f"{(encounter['started_at'] or '')[:16]} {encounter['service_type']} ({encounter['status']})",
        [
            ("Establecimiento", establishment.get("name")),
            ("Modalidad", encounter["modality_used"] or encounter["modality_planned"]),
            ("Profesionales", professionals),
        ],
    )
    for note in encounter["notes"]:
        content = note["content"]
        rows: list[tuple[str, Any]] = [("Nota firmada", f"{(note['signed_at'] or '')[:16]} por {note['signed_by']}")]
        rows += [(label, _path(content, path)) for path, label in _NOTE_TEXTS]
        rows += [("Diagnóstico", f"{d.get('code', '')} ({d.get('type', '')})") for d in content.get("diagnoses") or []]
        rows += [
            (
                "Receta",
                " ".join(
                    str(item.get(key) or "")
                    for key in ("drug", "concentration", "form", "dose", "dose_unit", "route", "frequency", "duration")
                ).strip()
                + (f". {item['instructions']}" if item.get("instructions") else ""),
            )
            for item in content.get("prescriptions") or []
        ]
        rows += [(label, _path(content, path)) for path, label in _NOTE_CLOSING]
        rows += [
            (f"Enmienda {a['created_at'][:16]} ({a['author']})", f"{a['reason']}: {a['text']}")
            for a in note["amendments"]
        ]
        # Sections left empty in the note are not printed.
        section("", [(label, value) for label, value in rows if value not in (None, "")])


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

    def section(title: str, rows: list[tuple[str, Any]], *, say_if_empty: bool = True) -> None:
        pdf.ln(3)
        if title:
            pdf.set_font("Helvetica", style="B", size=12)
            pdf.multi_cell(0, 8, title.encode("latin-1", "replace").decode("latin-1"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=10)
        if not rows and say_if_empty:
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
        "Alergias",
        [
            (
                a["substance"],
                f"{a['severity']}, {a['status']}" + (f"; reacción: {a['reaction']}" if a["reaction"] else ""),
            )
            for a in bundle["allergies"]
        ],
    )
    section(
        "Problemas",
        [
            (f"{p['cie10_code']} {p['cie10_title']}".strip(), f"{p['status']}; {p['description']}".rstrip("; "))
            for p in bundle["problems"]
        ],
    )
    section(
        "Medicación",
        [(m["drug"], f"{m['dose'] or '-'}, {m['status']}") for m in bundle["medications"]],
    )
    section("Atenciones y notas firmadas", [], say_if_empty=not bundle["encounters"])
    for encounter in bundle["encounters"]:
        _encounter_rows(section, encounter)
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
