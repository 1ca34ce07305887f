"""The printable record of a signed encounter (EHR-7): a PDF with the note's NTS sections, carrying a PAdES
signature made with the practitioner's signing material so standard PDF readers can verify it.

The document is always in Spanish: it is the clinical history of a Peruvian establishment (NTS 139-MINSA)
and its text is what the signature covers, so it must not change with the reader's language setting.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from django.utils import translation
from fpdf import FPDF
from fpdf.fonts import FontFace
from pyhanko.keys.internal import translate_pyca_cryptography_cert_to_asn1, translate_pyca_cryptography_key_to_asn1
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from accounts.access import AccessDenied
from accounts.models import Establishment, PractitionerProfile, Profession, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records.access import chart_policy, note_for
from records.models import (
    ClinicalHistoryNumber,
    ClinicalNote,
    DocumentType,
    Encounter,
    EncounterParticipant,
    Modality,
    NoteAmendment,
    NoteStatus,
    Patient,
    PatientIdentifier,
    ServiceType,
    Sex,
)
from records.signing import practitioner_signing_material

# fontTools reports every font subset at INFO: a dozen lines per document, of no use in the service's logs.
logging.getLogger("fontTools.subset").setLevel(logging.WARNING)

FONT_DIR = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVu"
SIGNATURE_FIELD = "FirmaAtencion"
SIGNATURE_REASON = "Firma de la atención"
DOCUMENT_TITLE = "Registro de atención por telemedicina"

DIAGNOSIS_TYPES = {"presumptive": "Presuntivo", "definitive": "Definitivo", "repeat": "Repetido"}

# (key in the note's vital signs, printed label, unit)
VITAL_SIGNS = (
    ("temperature_c", "Temperatura", "°C"),
    ("heart_rate", "Frecuencia cardiaca", "lpm"),
    ("respiratory_rate", "Frecuencia respiratoria", "rpm"),
    ("blood_pressure", "Presión arterial", "mmHg"),
    ("spo2", "Saturación de oxígeno", "%"),
    ("weight_kg", "Peso", "kg"),
    ("height_cm", "Talla", "cm"),
)


@dataclass(frozen=True)
class PrintableEstablishment:
    name: str
    renipress: str


@dataclass(frozen=True)
class PrintablePatient:
    full_name: str
    document: str  # "DNI 12345678"; "" when the patient has none on file
    age: str  # "34 años" at the date of the encounter
    sex: str
    history_number: str


@dataclass(frozen=True)
class PrintableDiagnosis:
    code: str
    title: str
    type: str  # presumptive / definitive / repeat (the note's value)


@dataclass(frozen=True)
class PrintableAmendment:
    created_at: dt.datetime
    author: str
    reason: str
    text: str


@dataclass(frozen=True)
class PrintableSigner:
    full_name: str
    profession: str
    registry_body: str
    registry_number: str
    rne: str
    signed_at: dt.datetime
    content_sha256: str


@dataclass(frozen=True)
class PrintableEncounter:
    """Everything the printed record shows, already decrypted and resolved to display text.

    `content` is the signed note's JSON (records.notes.NOTE_SECTIONS); diagnoses come separately because
    their titles are looked up in the CIE-10 list. Datetimes are aware and printed in `time_zone`, the
    establishment's zone.
    """

    establishment: PrintableEstablishment
    consulted_establishment: PrintableEstablishment | None
    patient: PrintablePatient
    time_zone: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    service_type: str
    modality: str
    content: Mapping[str, Any]
    diagnoses: Sequence[PrintableDiagnosis]
    signer: PrintableSigner
    amendments: Sequence[PrintableAmendment] = field(default_factory=tuple)


class _Record(FPDF):
    def __init__(self, footer_text: str) -> None:
        super().__init__(format="A4")
        self._footer_text = footer_text

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT, size=7)
        self.set_text_color(90)
        self.cell(0, 6, f"{self._footer_text} · Página {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0)


def _text(value: Any) -> str:
    if value is None:
        return ""
    # Line breaks as typed (any convention); tabs as a space (the font has no glyph for them).
    return str(value).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ").strip()


def _local(value: dt.datetime | None, zone: zoneinfo.ZoneInfo, fmt: str = "%d/%m/%Y %H:%M") -> str:
    return value.astimezone(zone).strftime(fmt) if value else "-"


def _vital_signs_line(vitals: Mapping[str, Any]) -> str:
    values = dict(vitals)
    if values.get("systolic") is not None and values.get("diastolic") is not None:
        values["blood_pressure"] = f"{values['systolic']}/{values['diastolic']}"
    parts = [f"{label}: {values[key]} {unit}" for key, label, unit in VITAL_SIGNS if values.get(key) not in (None, "")]
    return "; ".join(parts)


def render_encounter_pdf(data: PrintableEncounter) -> bytes:
    """The unsigned PDF of the record. Its metadata names no one: only the page body identifies the patient."""
    zone = zoneinfo.ZoneInfo(data.time_zone)
    pdf = _Record(f"{DOCUMENT_TITLE} · {data.establishment.name}")
    pdf.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    # The Info dictionary travels with the file into mail clients and document indexes: generic values only.
    pdf.set_title(DOCUMENT_TITLE)
    pdf.set_creator("Teleconsult")
    pdf.set_lang("es-PE")
    pdf.set_creation_date(data.signer.signed_at)
    pdf.alias_nb_pages()
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.add_page()
    width = pdf.epw

    def line(text: str, *, size: float = 9.5, bold: bool = False, height: float = 5) -> None:
        pdf.set_font(FONT, "B" if bold else "", size)
        pdf.multi_cell(width, height, text, new_x="LMARGIN", new_y="NEXT")

    def labelled(label: str, value: Any) -> None:
        value = _text(value) or "-"
        pdf.set_font(FONT, "B", 9.5)
        pdf.write(5, f"{label}: ")
        pdf.set_font(FONT, "", 9.5)
        pdf.write(5, value)
        pdf.ln(5)

    def labelled_whole(label: str, value: Any) -> None:
        """A label and, on a line of its own, a value that must stay whole (a fingerprint to compare by eye): written
        after the label, a 64-character hash broke before its last characters whenever the line ran out."""
        line(f"{label}:", bold=True)
        line(_text(value) or "-")

    def heading(title: str, *, keep_with_next: float = 18) -> None:
        # A heading never ends a page apart from what it introduces.
        if pdf.get_y() + keep_with_next > pdf.page_break_trigger:
            pdf.add_page()
        pdf.ln(2)
        line(title, size=11, bold=True, height=6)
        pdf.set_draw_color(150)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())
        pdf.ln(1)

    def paragraph(value: Any) -> None:
        line(_text(value) or "-")

    # Establishment and document title.
    line(data.establishment.name, size=13, bold=True, height=7)
    line(f"RENIPRESS: {data.establishment.renipress}")
    if data.consulted_establishment:
        consulted = data.consulted_establishment
        line(f"Establecimiento consultado: {consulted.name} (RENIPRESS: {consulted.renipress})")
    pdf.ln(2)
    line(DOCUMENT_TITLE.upper(), size=12, bold=True, height=7)

    content = data.content
    patient = data.patient
    heading("Datos de identificación")
    labelled("Paciente", patient.full_name)
    labelled("Documento de identidad", patient.document)
    labelled("Edad", patient.age)
    labelled("Sexo", patient.sex)
    labelled("N.° de historia clínica", patient.history_number)

    heading("Datos de la atención")
    labelled("Fecha", _local(data.started_at, zone, "%d/%m/%Y"))
    labelled(
        "Hora de inicio y de fin",
        f"{_local(data.started_at, zone, '%H:%M')} - {_local(data.ended_at, zone, '%H:%M')} ({data.time_zone})",
    )
    labelled("Tipo de servicio", data.service_type)
    labelled("Modalidad", data.modality)

    heading("Motivo de consulta")
    paragraph(content.get("reason"))

    anamnesis = content.get("anamnesis") or {}
    heading("Anamnesis")
    labelled("Tiempo de enfermedad", anamnesis.get("illness_duration"))
    labelled("Forma de inicio", anamnesis.get("onset"))
    labelled("Curso", anamnesis.get("course"))
    labelled("Relato", anamnesis.get("story"))

    heading("Antecedentes")
    paragraph(content.get("history"))

    examination = content.get("examination") or {}
    heading("Examen físico")
    vitals = _vital_signs_line(examination.get("vital_signs") or {})
    if vitals:
        reported = " (referidos por el paciente)" if examination.get("patient_reported") else ""
        labelled(f"Signos vitales{reported}", vitals)
    paragraph(examination.get("text"))

    heading("Diagnósticos (CIE-10)")
    if not data.diagnoses:
        paragraph("")
    for number, diagnosis in enumerate(data.diagnoses, start=1):
        kind = DIAGNOSIS_TYPES.get(diagnosis.type, diagnosis.type)
        title = f" - {diagnosis.title}" if diagnosis.title else ""
        line(f"{number}. {diagnosis.code}{title} ({kind})")

    heading("Plan de trabajo")
    paragraph(content.get("plan"))

    heading("Prescripciones")
    prescriptions = content.get("prescriptions") or []
    if prescriptions:
        pdf.set_font(FONT, "", 8)
        pdf.set_draw_color(150)
        with pdf.table(
            col_widths=(40, 18, 14, 22, 18, 14),
            text_align="LEFT",
            line_height=4.2,
            headings_style=FontFace(family=FONT, emphasis="BOLD", fill_color=(230, 230, 230)),
        ) as table:
            table.row(("Medicamento", "Dosis", "Vía", "Frecuencia", "Duración", "Cantidad"))
            for item in prescriptions:
                drug = " ".join(_text(item.get(k)) for k in ("drug", "concentration", "form") if _text(item.get(k)))
                dose = " ".join(_text(item.get(k)) for k in ("dose", "dose_unit") if _text(item.get(k)))
                others = (_text(item.get(k)) for k in ("route", "frequency", "duration", "quantity"))
                table.row(tuple(value or "-" for value in (drug, dose, *others)))
                # Instructions (up to 1,000 characters) get the full width: in a narrow column a long text
                # would make a row taller than a page, which the table cannot split.
                instructions = _text(item.get("instructions"))
                if instructions:
                    row = table.row()
                    row.cell(f"Indicaciones de uso: {instructions}", colspan=6)
    else:
        paragraph("")

    heading("Tratamiento")
    paragraph(content.get("treatment"))
    heading("Indicaciones al paciente")
    paragraph(content.get("indications"))
    heading("Próxima cita")
    paragraph(content.get("next_appointment"))

    signer = data.signer
    heading("Firma", keep_with_next=45)  # the whole block on one page
    labelled("Profesional", signer.full_name)
    labelled("Profesión", signer.profession)
    labelled("Colegiatura", f"{signer.registry_body} {signer.registry_number}")
    if signer.rne:
        labelled("RNE", signer.rne)
    labelled("Fecha de firma", f"{_local(signer.signed_at, zone)} ({data.time_zone})")
    labelled_whole("SHA-256 de la nota firmada", signer.content_sha256)
    line("Documento firmado digitalmente (PAdES). La firma puede verificarse en cualquier lector de PDF.", size=8)

    # Corrections follow the original, which stays as it was signed (EHR-6).
    if data.amendments:
        heading("Enmiendas")
        for number, amendment in enumerate(data.amendments, start=1):
            line(
                f"Enmienda {number} - {_local(amendment.created_at, zone)} ({data.time_zone}) - {amendment.author}",
                bold=True,
            )
            labelled("Motivo", amendment.reason)
            paragraph(amendment.text)
            pdf.ln(1)

    return bytes(pdf.output())


def sign_pdf(
    pdf_bytes: bytes,
    *,
    key: CertificateIssuerPrivateKeyTypes,
    certificate: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    location: str,
    signer_name: str,
) -> bytes:
    """Sign the whole document with a PAdES baseline B-B signature (CAdES detached, signing certificate
    bound in the signed attributes), embedding the certificate chain so a reader can build the path.

    A certification signature that allows no changes: any later edit of the file shows as such in readers.
    """
    signer = signers.SimpleSigner(
        signing_cert=translate_pyca_cryptography_cert_to_asn1(certificate),
        signing_key=translate_pyca_cryptography_key_to_asn1(key),
        cert_registry=SimpleCertificateStore.from_certs([translate_pyca_cryptography_cert_to_asn1(c) for c in chain]),
    )
    metadata = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        md_algorithm="sha256",
        reason=SIGNATURE_REASON,
        location=location,
        name=signer_name,
        subfilter=fields.SigSeedSubFilter.PADES,
        certify=True,
        docmdp_permissions=fields.MDPPerm.NO_CHANGES,
    )
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf_bytes))
    output = signers.sign_pdf(writer, metadata, signer=signer)
    return output.getvalue()


# --- From a signed note


def _person_name(patient: Patient) -> str:
    return " ".join(part for part in (patient.given_names, patient.paternal_surname, patient.maternal_surname) if part)


def _age(birth_date: dt.date, on: dt.date) -> str:
    months = (on.year - birth_date.year) * 12 + on.month - birth_date.month - (on.day < birth_date.day)
    if months < 12:
        return f"{months} {'mes' if months == 1 else 'meses'}"
    years = months // 12
    return f"{years} {'año' if years == 1 else 'años'}"


# The document printed on the record when a patient has several: the national one first.
_DOCUMENT_PREFERENCE: list[str] = [DocumentType.DNI, DocumentType.FOREIGNER_CARD, DocumentType.PASSPORT]


def _document(patient: Patient) -> str:
    identifiers = sorted(
        PatientIdentifier.objects.filter(patient=patient), key=lambda i: _DOCUMENT_PREFERENCE.index(i.document_type)
    )
    if not identifiers:
        return ""
    identifier = identifiers[0]
    label = DocumentType(identifier.document_type).label
    country = f" ({identifier.issuing_country})" if identifier.document_type == DocumentType.PASSPORT else ""
    return f"{label}{country} {identifier.value}"


def _cie10_title(code: str) -> str:
    # The CIE-10 list (records.cie10) is built alongside this module; until it is present the code alone prints.
    try:
        from records import cie10
    except ImportError:
        return ""
    entry = cie10.lookup(code)
    return entry.title_es if entry else ""


def _establishment(establishment: Establishment) -> PrintableEstablishment:
    return PrintableEstablishment(establishment.name, establishment.renipress_code)


def printable_encounter(note: ClinicalNote) -> PrintableEncounter:
    """Gather a signed note's record for printing (decrypting it). Callers gate and audit."""
    if note.status != NoteStatus.SIGNED or note.signed_by is None or note.signed_at is None:
        raise ValueError("Only a signed note has a printable record.")
    encounter = Encounter.objects.select_related("origin_establishment", "consulted_establishment", "patient").get(
        pk=note.encounter_id
    )
    patient = encounter.patient
    origin = encounter.origin_establishment
    zone = zoneinfo.ZoneInfo(origin.time_zone)
    signer_user = note.signed_by
    participant = EncounterParticipant.objects.filter(encounter=encounter, user=signer_user).first()
    if participant is not None:
        signer_name, profession_code = participant.full_name, participant.profession
        body, number, rne = participant.registry_body, participant.registry_number, participant.rne
    else:
        profile = PractitionerProfile.objects.get(user=signer_user)
        signer_name, profession_code = signer_user.full_name, profile.profession
        body, number, rne = profile.registry_body, profile.registry_number, profile.rne
    history = ClinicalHistoryNumber.objects.filter(patient=patient, establishment=origin).first()
    content = json.loads(note.content)
    on = (encounter.started_at or note.signed_at).astimezone(zone).date()
    # Choice labels are Spanish source strings; the record is in Spanish whatever the reader's language.
    with translation.override("es-pe"):
        return PrintableEncounter(
            establishment=_establishment(origin),
            consulted_establishment=(
                _establishment(encounter.consulted_establishment) if encounter.consulted_establishment else None
            ),
            patient=PrintablePatient(
                full_name=_person_name(patient),
                document=_document(patient),
                age=_age(patient.birth_date, on),
                sex=str(Sex(patient.sex).label),
                history_number=history.number if history else "",
            ),
            time_zone=origin.time_zone,
            started_at=encounter.started_at,
            ended_at=encounter.ended_at,
            service_type=str(ServiceType(encounter.service_type).label),
            modality=str(Modality(encounter.modality_used or encounter.modality_planned).label),
            content=content,
            diagnoses=[
                PrintableDiagnosis(code=code, title=_cie10_title(code), type=diagnosis.get("type", ""))
                for diagnosis in content.get("diagnoses") or []
                for code in [diagnosis.get("code", "")]
            ],
            signer=PrintableSigner(
                full_name=signer_name,
                profession=str(Profession(profession_code).label) if profession_code in Profession.values else "",
                registry_body=body,
                registry_number=number,
                rne=rne,
                signed_at=note.signed_at,
                content_sha256=note.content_sha256,
            ),
            amendments=[
                PrintableAmendment(
                    created_at=amendment.created_at,
                    author=(
                        f"{amendment.author_name} ({amendment.author_registry_body} {amendment.author_registry_number})"
                    ),
                    reason=amendment.reason,
                    text=amendment.text,
                )
                for amendment in NoteAmendment.objects.filter(note=note).order_by("created_at", "pk")
            ],
        )


def encounter_pdf(*, note: ClinicalNote) -> bytes:
    """The signed PDF of a signed note, signed with its signer's key and certificate. Callers gate and audit."""
    data = printable_encounter(note)
    if note.signed_by is None:
        raise ValueError("Only a signed note has a signed PDF.")
    key, certificate, chain = practitioner_signing_material(note.signed_by)
    return sign_pdf(
        render_encounter_pdf(data),
        key=key,
        certificate=certificate,
        chain=chain,
        location=data.establishment.name,
        signer_name=data.signer.full_name,
    )


def encounter_pdf_for_download(*, user: User, note_id: int) -> bytes:
    """The printable record for `user`: the patient their own signed notes, a practitioner with access to the
    chart any signed note of it (records.access.note_for decides and audits the read). Each download is audited.

    A draft has no printable record: it is refused like a missing note.
    """
    note = note_for(user, note_id)
    if note.status != NoteStatus.SIGNED:
        raise AccessDenied
    content = encounter_pdf(note=note)
    # The same purpose of use as the read the gate just audited (treatment, or emergency after break-glass).
    decision = chart_policy(user, note.patient_id)
    purpose = decision[0] if decision else Purpose.TREATMENT
    audit.record(
        action=AuditAction.NOTE_PDF_DOWNLOADED,
        purpose=purpose,
        actor_user_id=user.pk,
        actor_role=user.role,
        patient_id=note.patient_id,
        object_type="note",
        object_id=note.pk,
        details={"bytes": len(content)},
    )
    return content
