"""The demonstration data `seed_demo` creates and `serve` prints: fictional people with known sign-ins.

Everything here is public by design (it is in the source), which is why `seed_demo` refuses to run in
production. Names, registry numbers and codes are invented; the e-mail domain is reserved (.test).
"""

# ruff: noqa: S105, S106 - the demo password and authenticator secrets are published on purpose.

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import NotRequired, TypedDict
from urllib.parse import quote, urlencode

DEMO_PASSWORD = "teleconsult-demo"
TOTP_ISSUER = "Teleconsult Demo"


@dataclass(frozen=True)
class DemoEstablishment:
    key: str
    name: str
    renipress_code: str
    time_zone: str


@dataclass(frozen=True)
class DemoPerson:
    email: str
    full_name: str
    role: str  # an accounts.models.Role value
    establishments: tuple[str, ...] = ()
    # Practitioner registry data (accounts.models.PractitionerProfile fields).
    practitioner: tuple[tuple[str, str], ...] = ()
    # Base32 TOTP secret for staff: fixed, so an authenticator app set up once keeps working after re-seeding.
    totp_secret: str = ""

    @property
    def totp_key_hex(self) -> str:
        return base64.b32decode(self.totp_secret).hex()

    @property
    def otpauth_uri(self) -> str:
        label = quote(f"{TOTP_ISSUER}:{self.email}")
        query = urlencode({"secret": self.totp_secret, "issuer": TOTP_ISSUER, "digits": 6, "period": 30})
        return f"otpauth://totp/{label}?{query}"


ESTABLISHMENTS = (
    DemoEstablishment("home", "Centro de Salud Demo", "00099901", "America/Lima"),
    # Where the consulted specialist of a teleinterconsulta works.
    DemoEstablishment("referral", "Hospital Regional Demo", "00099902", "America/Lima"),
)

STAFF = (
    DemoPerson(
        email="medico@demo.test",
        full_name="Dra. Rosa Huamán Ccori",
        role="practitioner",
        establishments=("home",),
        practitioner=(
            ("profession", "physician"),
            ("registry_body", "CMP"),
            ("registry_number", "99901"),
            ("specialty", "Medicina general"),
        ),
        totp_secret="SD24XZM25PEZP6SFX7BJYFSTVWRZJ7ZO",
    ),
    DemoPerson(
        email="especialista@demo.test",
        full_name="Dr. Jorge Salazar Villanueva",
        role="practitioner",
        establishments=("referral", "home"),
        practitioner=(
            ("profession", "physician"),
            ("registry_body", "CMP"),
            ("registry_number", "99902"),
            ("specialty", "Cardiología"),
            ("rne", "99903"),
        ),
        totp_secret="4MAGIRBJ5CJAUEHAXL67GQTPNI3CDTIU",
    ),
    DemoPerson(
        email="coordinacion@demo.test",
        full_name="Lucía Torres Paredes",
        role="coordinator",
        establishments=("home",),
        totp_secret="IOWNDPUVA7KHI23MMSZ6GUUD5OLK6GXY",
    ),
    DemoPerson(
        email="admin@demo.test",
        full_name="Carlos Mendoza Ríos",
        role="clinic_admin",
        establishments=("home",),
        totp_secret="SZ3WXXCAVL6634ZJJ4RNUVYV2K3UUHVR",
    ),
    DemoPerson(
        email="auditoria@demo.test",
        full_name="Elena Vargas Quispe",
        role="auditor",
        establishments=("home",),
        totp_secret="4GMQXE52RDWXWBMGPZRTOYC7OGYUYUMP",
    ),
)

PATIENTS = (
    DemoPerson(email="paciente1@demo.test", full_name="María Condori Apaza", role="patient"),
    DemoPerson(email="paciente2@demo.test", full_name="Juan Pérez Ticona", role="patient"),
    DemoPerson(email="paciente3@demo.test", full_name="Ana Flores Mamani", role="patient"),
)

PEOPLE = STAFF + PATIENTS


@dataclass(frozen=True)
class DemoPatientRecord:
    """The clinical identity (records.Patient) of a demo patient's sign-in. DNIs are invented but valid
    (8 digits; the check character printed on the card is the last one here)."""

    email: str
    given_names: str
    paternal_surname: str
    maternal_surname: str
    sex: str
    birth_date: str  # ISO date
    dni: str  # with its check character, as a patient would type it
    history_number: str  # at the "home" establishment
    phone: str


PATIENT_RECORDS = (
    DemoPatientRecord(
        "paciente1@demo.test",
        "María",
        "Condori",
        "Apaza",
        "female",
        "1987-04-12",
        "40123456-5",
        "HC-000101",
        "+51 951 000 101",
    ),
    DemoPatientRecord(
        "paciente2@demo.test",
        "Juan",
        "Pérez",
        "Ticona",
        "male",
        "1979-09-30",
        "41234567-9",
        "HC-000102",
        "+51 951 000 102",
    ),
    DemoPatientRecord(
        "paciente3@demo.test",
        "Ana",
        "Flores",
        "Mamani",
        "female",
        "2001-01-23",
        "42345678-2",
        "HC-000103",
        "+51 951 000 103",
    ),
)

# Consent texts (CON-1), Spanish and English, one per kind: (kind, validity in days or None, es, en), each
# language a (title, text) pair. Plain demo wording, not legal advice.
CONSENT_TEXTS: tuple[tuple[str, int | None, tuple[str, str], tuple[str, str]], ...] = (
    (
        "telemedicine",
        365,
        (
            "Consentimiento informado para telemedicina",
            "Acepto recibir atención de salud a distancia por video, audio o chat. Entiendo sus beneficios y "
            "límites: el profesional puede indicarme una consulta presencial si lo considera necesario.",
        ),
        (
            "Informed consent for telemedicine",
            "I agree to receive health care remotely by video, audio or chat. I understand its benefits and "
            "limits: the practitioner may ask me to attend in person when needed.",
        ),
    ),
    (
        "data_processing",
        None,
        (
            "Tratamiento de datos personales (Ley 29733)",
            "Autorizo el tratamiento de mis datos personales y de salud para mi atención, según la Ley 29733. "
            "Puedo ejercer mis derechos de acceso, rectificación, cancelación y oposición.",
        ),
        (
            "Processing of personal data (Law 29733)",
            "I authorise the processing of my personal and health data for my care under Law 29733. I may "
            "exercise my rights of access, rectification, cancellation and opposition.",
        ),
    ),
    (
        "recording_video",
        None,
        ("Grabación de video", "Acepto que la consulta se grabe en video y se guarde cifrada en mi historia."),
        ("Video recording", "I agree that the visit is recorded on video and kept encrypted in my record."),
    ),
    (
        "recording_audio",
        None,
        ("Grabación de audio", "Acepto que la consulta se grabe en audio y se guarde cifrada en mi historia."),
        ("Audio recording", "I agree that the visit is recorded as audio and kept encrypted in my record."),
    ),
    (
        "recording_images",
        None,
        ("Captura de imágenes", "Acepto que se tomen imágenes durante la consulta y se guarden en mi historia."),
        ("Image capture", "I agree that images are taken during the visit and kept in my record."),
    ),
    (
        "sharing",
        None,
        (
            "Compartir con otros establecimientos",
            "Acepto que mi historia se comparta con otros establecimientos que me atiendan y con el registro "
            "nacional de historias clínicas electrónicas.",
        ),
        (
            "Sharing with other establishments",
            "I agree that my record is shared with other establishments that treat me and with the national "
            "electronic health record registry.",
        ),
    ),
)
CONSENT_PUBLISHER = "admin@demo.test"


def sign_in_lines() -> list[str]:
    """The demo sign-ins as printed by `seed_demo` and `serve` (the same text every time)."""
    lines = [f"Demo sign-ins (password for everyone: {DEMO_PASSWORD})"]
    for person in PEOPLE:
        lines.append(f"  {person.role:<13} {person.email}")
    lines.append("Staff also enter a code from an authenticator app; add these secrets to it once:")
    for person in STAFF:
        lines.append(f"  {person.email:<24} {person.totp_secret}")
        lines.append(f"  {'':<24} {person.otpauth_uri}")
    return lines


DEMO_COORDINATOR = "coordinacion@demo.test"


class VisitTypeFields(TypedDict):
    """The keyword arguments `visit_type_create` takes besides the establishment and who creates it."""

    name: str
    specialty: str
    service_type: str
    modality: str
    duration_minutes: int
    buffer_minutes: NotRequired[int]


# (key, establishment key, visit type fields)
VISIT_TYPES: tuple[tuple[str, str, VisitTypeFields], ...] = (
    ("general", "home", {"name": "Teleconsulta de medicina general", "specialty": "Medicina general",
                         "service_type": "teleconsulta", "modality": "video", "duration_minutes": 20,
                         "buffer_minutes": 5}),
    ("orientation", "home", {"name": "Teleorientación (solo audio)", "specialty": "Medicina general",
                             "service_type": "teleorientacion", "modality": "audio", "duration_minutes": 15}),
    ("cardiology", "referral", {"name": "Teleconsulta de cardiología", "specialty": "Cardiología",
                                "service_type": "teleconsulta", "modality": "video", "duration_minutes": 30}),
    ("interconsultation", "home", {"name": "Teleinterconsulta de cardiología", "specialty": "Cardiología",
                                   "service_type": "teleinterconsulta", "modality": "video",
                                   "duration_minutes": 30}),
)  # fmt: skip

# (practitioner e-mail, establishment key, weekdays (0 = Monday), start, end, visit type keys)
WEEKLY_AVAILABILITY = (
    ("medico@demo.test", "home", range(0, 6), "08:00", "13:00", ("general", "orientation", "interconsultation")),
    ("especialista@demo.test", "referral", range(0, 5), "10:00", "16:00", ("cardiology",)),
)
