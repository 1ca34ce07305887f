"""The printable encounter record (EHR-7): the PDF's content and its PAdES signature, checked with pyhanko's
validator against a throwaway certification authority made here."""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass, replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.keys.internal import translate_pyca_cryptography_cert_to_asn1
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from records.printable import (
    SIGNATURE_REASON,
    PrintableAmendment,
    PrintableDiagnosis,
    PrintableEncounter,
    PrintableEstablishment,
    PrintablePatient,
    PrintableSigner,
    render_encounter_pdf,
    sign_pdf,
)

NOW = dt.datetime(2026, 11, 30, 15, 10, tzinfo=dt.UTC)  # 10:10 in Lima


@dataclass(frozen=True)
class SigningMaterial:
    ca: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=not signs_certificates,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def make_signing_material(practitioner_name: str = "Ana Quispe Mamani") -> SigningMaterial:
    """A certification authority and a practitioner certificate it issued, valid around today."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Autoridad de prueba"))
        .issuer_name(_name("Autoridad de prueba"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(signs_certificates=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(practitioner_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(signs_certificates=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return SigningMaterial(ca=ca, key=key, certificate=certificate)


def sample_encounter(**changes) -> PrintableEncounter:
    data = PrintableEncounter(
        establishment=PrintableEstablishment("Centro de Salud Belén", "00006210"),
        consulted_establishment=PrintableEstablishment("Hospital Regional del Sur", "00007380"),
        patient=PrintablePatient("María Ñañez Peña", "DNI 40817263", "34 años", "Femenino", "HC-000123"),
        time_zone="America/Lima",
        started_at=NOW - dt.timedelta(minutes=25),
        ended_at=NOW,
        service_type="Teleinterconsulta",
        modality="Video",
        content={
            "reason": "Tos y fiebre desde hace tres días",
            "anamnesis": {
                "illness_duration": "3 días",
                "onset": "Brusco",
                "course": "Progresivo",
                "story": "Refiere odinofagia y congestión nasal.",
            },
            "history": "Niega alergias medicamentosas.",
            "examination": {
                "text": "Orofaringe congestiva, sin exudado.",
                "vital_signs": {
                    "temperature_c": 38.2,
                    "heart_rate": 92,
                    "respiratory_rate": 18,
                    "systolic": 118,
                    "diastolic": 76,
                    "spo2": 97,
                    "weight_kg": None,
                    "height_cm": None,
                },
                "patient_reported": True,
            },
            "diagnoses": [{"code": "J06.9", "type": "presumptive"}],
            "plan": "Control por teleconsulta en 48 horas.",
            "prescriptions": [
                {
                    "id": "5d1f0c1e-8f7b-4d1a-9c55-3f3a9f6f3c11",
                    "drug": "Paracetamol",
                    "concentration": "500 mg",
                    "form": "tableta",
                    "dose": "1",
                    "dose_unit": "tableta",
                    "route": "oral",
                    "frequency": "cada 8 horas",
                    "duration": "3 días",
                    "quantity": "9",
                    "instructions": "Después de las comidas",
                }
            ],
            "treatment": "Reposo relativo e hidratación.",
            "indications": "Acudir a emergencia si presenta dificultad para respirar.",
            "next_appointment": "En 7 días",
        },
        diagnoses=[
            PrintableDiagnosis(
                "J06.9", "Infección aguda de las vías respiratorias superiores, no especificada", "presumptive"
            )
        ],
        signer=PrintableSigner(
            full_name="Ana Quispe Mamani",
            profession="Médico(a)",
            registry_body="CMP",
            registry_number="045678",
            rne="031245",
            signed_at=NOW,
            content_sha256="3f" * 32,
        ),
        amendments=[
            PrintableAmendment(
                created_at=NOW + dt.timedelta(hours=2),
                author="Ana Quispe Mamani",
                reason="Corrección de la dosis",
                text="La cantidad correcta es 10 tabletas.",
            )
        ],
    )
    return replace(data, **changes)


@pytest.fixture(scope="module")
def material() -> SigningMaterial:
    return make_signing_material()


@pytest.fixture(scope="module")
def signed(material) -> bytes:
    raw = render_encounter_pdf(sample_encounter())
    return sign_pdf(
        raw,
        key=material.key,
        certificate=material.certificate,
        chain=[material.ca],
        location="Centro de Salud Belén",
        signer_name="Ana Quispe Mamani",
    )


def _validate(pdf: bytes, trust_root: x509.Certificate):
    reader = PdfFileReader(io.BytesIO(pdf))
    (signature,) = reader.embedded_signatures
    context = ValidationContext(
        trust_roots=[translate_pyca_cryptography_cert_to_asn1(trust_root)], allow_fetching=False
    )
    return signature, validate_pdf_signature(signature, context)


# --- Reading the text back: fpdf2 writes DejaVu text as 2-byte glyph ids; each font's ToUnicode map turns
# them back into characters (what a PDF reader does for copy and search).

_LITERAL = rb"\((?:\\.|[^\\()])*\)"
_TOKENS = re.compile(
    rb"/(?P<font>F\d+)\s+[\d.]+\s+Tf|(?P<x>-?[\d.]+)\s+(?P<y>-?[\d.]+)\s+Td|(?P<string>" + _LITERAL + rb")",
    re.DOTALL,
)
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def _unescape(literal: bytes) -> bytes:
    out, body, i = bytearray(), literal[1:-1], 0
    while i < len(body):
        if body[i : i + 1] == b"\\":
            following = body[i + 1 : i + 2]
            octal = re.match(rb"[0-7]{1,3}", body[i + 1 : i + 4])
            if octal:
                out.append(int(octal.group(), 8))
                i += 1 + len(octal.group())
                continue
            out += _ESCAPES.get(following, following)
            i += 2
        else:
            out += body[i : i + 1]
            i += 1
    return bytes(out)


def _to_unicode(font) -> dict[bytes, str]:
    cmap = font["/ToUnicode"].get_object().data
    mapping = {}
    for source, target in re.findall(rb"<([0-9A-Fa-f]{4})>\s*<([0-9A-Fa-f]+)>", cmap):
        mapping[bytes.fromhex(source.decode())] = bytes.fromhex(target.decode()).decode("utf-16-be")
    return mapping


def _pages(node):
    node = node.get_object()
    if node["/Type"] == "/Pages":
        for kid in node["/Kids"]:
            yield from _pages(kid)
    else:
        yield node


def extract_text(pdf: bytes) -> str:
    reader = PdfFileReader(io.BytesIO(pdf))
    lines: list[str] = []
    for page in _pages(reader.root["/Pages"]):
        fonts = {str(name): _to_unicode(font.get_object()) for name, font in page["/Resources"]["/Font"].items()}
        mapping, y, current = {}, None, ""
        for match in _TOKENS.finditer(page["/Contents"].get_object().data):
            if match["font"]:
                mapping = fonts["/" + match["font"].decode()]
            elif match["y"] is not None:
                if match["y"] != y and current:
                    lines.append(current)
                    current = ""
                y = match["y"]
            else:
                glyphs = _unescape(match["string"])
                current += "".join(mapping.get(glyphs[i : i + 2], "\ufffd") for i in range(0, len(glyphs), 2))
        lines.append(current)
    return "\n".join(lines)


# --- The signature


def test_signature_validates_with_the_trusted_authority(signed, material):
    _, status = _validate(signed, material.ca)

    assert status.intact and status.valid and status.trusted
    assert status.bottom_line
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    assert status.signing_cert.sha256 == translate_pyca_cryptography_cert_to_asn1(material.certificate).sha256
    assert status.docmdp_ok


def test_signature_is_pades_baseline_b(signed, material):
    signature, _ = _validate(signed, material.ca)

    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert signature.sig_object["/Reason"] == SIGNATURE_REASON
    assert signature.sig_object["/Location"] == "Centro de Salud Belén"
    assert signature.sig_object["/Name"] == "Ana Quispe Mamani"
    attributes = {attr["type"].native for attr in signature.signer_info["signed_attrs"]}
    # B-B: the signing certificate is bound in the signed attributes; the time lives in /M, not in the CMS.
    assert {"content_type", "message_digest", "signing_certificate_v2"} <= attributes
    assert "signing_time" not in attributes
    # The chain travels in the signature so a reader can build the path to the authority it trusts.
    embedded = {cert.sha256 for cert in signature.other_embedded_certs}
    assert translate_pyca_cryptography_cert_to_asn1(material.ca).sha256 in embedded


def test_an_unknown_authority_is_not_trusted(signed):
    _, status = _validate(signed, make_signing_material().ca)

    assert status.intact and status.valid
    assert not status.trusted


def test_changing_one_byte_of_the_signed_range_breaks_the_signature(signed, material):
    signature, _ = _validate(signed, material.ca)
    first_range_end = signature.sig_object["/ByteRange"][1]
    position = signed.index(b"/Lang (es-PE)") + len(b"/Lang (es-P")
    assert position < first_range_end
    tampered = signed[:position] + b"F" + signed[position + 1 :]

    _, status = _validate(tampered, material.ca)

    assert not status.intact
    assert not status.bottom_line


# --- The content


def test_sections_establishments_and_signer_are_printed(signed):
    text = extract_text(signed)

    headings = [
        "Datos de identificación",
        "Datos de la atención",
        "Motivo de consulta",
        "Anamnesis",
        "Antecedentes",
        "Examen físico",
        "Diagnósticos (CIE-10)",
        "Plan de trabajo",
        "Prescripciones",
        "Tratamiento",
        "Indicaciones al paciente",
        "Próxima cita",
        "Firma",
        "Enmiendas",
    ]
    positions = [text.index(f"\n{heading}\n") for heading in headings]
    assert positions == sorted(positions), "the NTS sections come in the norm's order, amendments last"
    assert "Centro de Salud Belén" in text
    assert "RENIPRESS: 00006210" in text
    assert "Hospital Regional del Sur (RENIPRESS: 00007380)" in text
    assert "CMP 045678" in text
    assert "031245" in text
    assert "3f" * 32 in text
    assert "J06.9 - Infección aguda de las vías respiratorias superiores, no especificada (Presuntivo)" in text
    assert "Signos vitales (referidos por el paciente)" in text
    assert "Paracetamol 500 mg tableta" in text
    assert "10:10" in text  # the end of the visit in Lima's time, not UTC's 15:10
    assert "Corrección de la dosis" in text


def test_vital_signs_taken_by_staff_are_not_marked_patient_reported():
    data = sample_encounter()
    content = {**data.content, "examination": {**data.content["examination"], "patient_reported": False}}

    text = extract_text(render_encounter_pdf(replace(data, content=content, amendments=())))

    assert "Signos vitales:" in text.replace("\n", "")
    assert "referidos por el paciente" not in text
    assert "Enmiendas" not in text


def test_spanish_accents_render_with_the_embedded_dejavu_font(signed):
    text = extract_text(signed)

    assert "María Ñañez Peña" in text
    assert "Diagnósticos" in text and "Próxima cita" in text and "N.° de historia clínica" in text
    assert "\ufffd" not in text and "\x00" not in text  # every glyph maps back to its character
    reader = PdfFileReader(io.BytesIO(signed))
    page = next(_pages(reader.root["/Pages"]))
    for font in page["/Resources"]["/Font"].values():
        font = font.get_object()
        assert "DejaVuSans" in font["/BaseFont"]
        descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
        assert "/FontFile2" in descriptor  # embedded, so readers without DejaVu show the same glyphs


def test_metadata_names_no_patient(signed):
    reader = PdfFileReader(io.BytesIO(signed))
    info = reader.trailer["/Info"].get_object()
    metadata = " ".join(str(value) for value in info.values())
    if "/Metadata" in reader.root:
        metadata += reader.root["/Metadata"].get_object().data.decode("utf-8")

    for private in ("María", "Ñañez", "Peña", "40817263", "HC-000123"):
        assert private not in metadata
    assert info["/Title"] == "Registro de atención por telemedicina"


def test_a_note_at_every_size_limit_renders_over_many_pages():
    # The limits of records.notes: 10,000 characters per text section, 30 prescriptions with every field full.
    long_text = ("Evolución tórpida;\tsin mejoría.\r\n" * 400)[:10_000]
    prescription = {
        "drug": "D" * 200,
        "concentration": "C" * 100,
        "form": "F" * 100,
        "dose": "9" * 50,
        "dose_unit": "u" * 30,
        "route": "r" * 50,
        "frequency": "q" * 100,
        "duration": "d" * 100,
        "quantity": "n" * 50,
        "instructions": "Tomar con agua " * 66,
    }
    data = sample_encounter()
    content = {
        **data.content,
        **{key: long_text for key in ("reason", "history", "plan", "treatment", "indications")},
        "anamnesis": {"story": long_text},
        "prescriptions": [prescription] * 30,
    }

    text = extract_text(render_encounter_pdf(replace(data, content=content)))

    assert text.count("Página ") > 10
    assert "Evolución tórpida; sin mejoría." in text
    assert text.index("\nPróxima cita\n") < text.index("\nFirma\n")
