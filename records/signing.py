"""Signing notes and amendments with the practitioner's key (EHR-5, EHR-6), and checking those signatures.

Each practitioner has one active key pair: ECDSA P-256 with an X.509 certificate issued by this installation's
own certification authority (created on first use), or a key and certificate imported from a PKCS#12 file
issued by a certification authority. Private keys are stored encrypted (EncryptedTextField). What is signed is
a canonical serialisation (sorted keys, no spaces, UTF-8) of the note's content and its metadata.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import PractitionerProfile, Role, User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records.medications import Alert, unacknowledged_alerts
from records.models import (
    ClinicalNote,
    EncounterParticipant,
    KeySource,
    NoteAmendment,
    NoteStatus,
    PractitionerKey,
    SigningAuthority,
)
from records.notes import missing_sections_for_signing, note_content

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

ECDSA_P256 = "ecdsa-p256-sha256"
RSA_PKCS1 = "rsa-pkcs1v15-sha256"
ED25519 = "ed25519"

AUTHORITY_VALIDITY = dt.timedelta(days=365 * 20)
PRACTITIONER_VALIDITY = dt.timedelta(days=365 * 5)
MAX_AMENDMENT_LENGTH = 10_000


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- keys and certificates ---


def _pem(key: SigningKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _public_pem(key: SigningKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _algorithm_of(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValidationError(_("Solo se aceptan claves de curva elíptica P-256."), code="unsupported_key")
        return ECDSA_P256
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValidationError(_("La clave RSA del certificado es demasiado corta."), code="unsupported_key")
        return RSA_PKCS1
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ED25519
    raise ValidationError(_("El tipo de clave del certificado no es compatible."), code="unsupported_key")


def _sign(key: SigningKey, data: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def _verify(certificate_pem: str, algorithm: str, signature: bytes, data: bytes) -> bool:
    try:
        public_key = x509.load_pem_x509_certificate(certificate_pem.encode("ascii")).public_key()
        if algorithm == ECDSA_P256 and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif algorithm == RSA_PKCS1 and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif algorithm == ED25519 and isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _lock(name: str, key: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s), %s)", [name, key])


def _authority() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """This installation's CA, created on first use (under a lock, so two first signings create one)."""
    authority = SigningAuthority.objects.filter(name="clinic").first()
    if authority is None:
        _lock("records.signing_authority", 0)
        authority = SigningAuthority.objects.filter(name="clinic").first()
    if authority is None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "PE"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Teleconsult"),
                x509.NameAttribute(NameOID.COMMON_NAME, "Teleconsult - autoridad de firma clínica"),
            ]
        )
        now = timezone.now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + AUTHORITY_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        authority = SigningAuthority.objects.create(
            name="clinic",
            private_key_pem=_pem(key),
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        )
    loaded = serialization.load_pem_private_key(authority.private_key_pem.encode("ascii"), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded, x509.load_pem_x509_certificate(authority.certificate_pem.encode("ascii"))


def _profile(user: User) -> PractitionerProfile:
    profile = PractitionerProfile.objects.filter(user=user).first()
    if user.role != Role.PRACTITIONER or profile is None:
        raise ValidationError(
            _("Solo un profesional de salud con número de colegiatura registrado puede firmar."),
            code="not_practitioner",
        )
    return profile


def _generate_key(user: User) -> PractitionerKey:
    profile = _profile(user)
    authority_key, authority_certificate = _authority()
    key = ec.generate_private_key(ec.SECP256R1())
    now = timezone.now()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "PE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Teleconsult"),
            x509.NameAttribute(NameOID.COMMON_NAME, user.full_name[:64] or f"user {user.pk}"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"{profile.registry_body} {profile.registry_number}"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + PRACTITIONER_VALIDITY, authority_certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority_key.public_key()), critical=False)
        .sign(authority_key, hashes.SHA256())
    )
    stored = PractitionerKey.objects.create(
        user=user,
        algorithm=ECDSA_P256,
        public_key_pem=_public_pem(key),
        private_key_pem=_pem(key),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        chain_pem=authority_certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        source=KeySource.GENERATED,
    )
    audit.record(
        action=AuditAction.SIGNING_KEY_CREATED,
        actor_user_id=user.pk,
        actor_role=user.role,
        object_type="signing_key",
        object_id=stored.pk,
        details={"algorithm": ECDSA_P256},
    )
    return stored


def _active_key(user: User) -> PractitionerKey:
    """The practitioner's active key, generated on first use (one per practitioner even under concurrency)."""
    key = PractitionerKey.objects.filter(user=user, revoked_at__isnull=True).first()
    if key is not None:
        return key
    _lock("records.practitioner_key", user.pk)
    return PractitionerKey.objects.filter(user=user, revoked_at__isnull=True).first() or _generate_key(user)


def _load_private(key: PractitionerKey) -> SigningKey:
    loaded = serialization.load_pem_private_key(key.private_key_pem.encode("ascii"), password=None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return loaded


def _load_chain(chain_pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(chain_pem.encode("ascii")) if chain_pem.strip() else []


@transaction.atomic
def practitioner_signing_material(user: User) -> tuple[SigningKey, x509.Certificate, list[x509.Certificate]]:
    """(private key, certificate, chain up to the issuer) of the practitioner's active key, for PAdES."""
    key = _active_key(user)
    certificate = x509.load_pem_x509_certificate(key.certificate_pem.encode("ascii"))
    return _load_private(key), certificate, _load_chain(key.chain_pem)


@transaction.atomic
def practitioner_key_import(*, user: User, p12_bytes: bytes, password: str | bytes | None, by: User) -> PractitionerKey:
    """Use a key and certificate issued by a certification authority (PKCS#12). Replaces the active key;
    notes signed earlier keep their own certificate and still verify."""
    if by.pk != user.pk:
        raise ValidationError(_("Cada profesional importa su propio certificado."), code="not_owner")
    _profile(user)
    secret = password.encode("utf-8") if isinstance(password, str) else password
    try:
        private_key, certificate, extra = pkcs12.load_key_and_certificates(p12_bytes, secret or None)
    except (ValueError, TypeError):
        raise ValidationError(
            _("No se pudo abrir el archivo PKCS#12: revise el archivo y su contraseña."), code="pkcs12_unreadable"
        ) from None
    if private_key is None or certificate is None:
        raise ValidationError(
            _("El archivo PKCS#12 no contiene una clave privada y su certificado."), code="pkcs12_incomplete"
        )
    if not isinstance(private_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValidationError(_("El tipo de clave del certificado no es compatible."), code="unsupported_key")
    algorithm = _algorithm_of(private_key)
    if _public_pem(private_key) != certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii"):
        raise ValidationError(_("La clave privada no corresponde al certificado."), code="pkcs12_mismatch")
    now = timezone.now()
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise ValidationError(_("El certificado no está vigente."), code="certificate_expired")
    _lock("records.practitioner_key", user.pk)
    PractitionerKey.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=now)
    stored = PractitionerKey.objects.create(
        user=user,
        algorithm=algorithm,
        public_key_pem=_public_pem(private_key),
        private_key_pem=_pem(private_key),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        chain_pem="".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in extra or []),
        source=KeySource.PKCS12,
        created_at=now,
    )
    audit.record(
        action=AuditAction.SIGNING_KEY_IMPORTED,
        actor_user_id=by.pk,
        actor_role=by.role,
        object_type="signing_key",
        object_id=stored.pk,
        details={"algorithm": algorithm},
    )
    return stored


# --- what is signed ---


def _author_registry(note: ClinicalNote) -> dict[str, str]:
    participant = EncounterParticipant.objects.filter(encounter_id=note.encounter_id, user_id=note.author_id).first()
    if participant is None:
        raise ValidationError(_("El autor no figura como participante de la atención."), code="not_participant")
    return {
        "name": participant.full_name,
        "profession": participant.profession,
        "registry_body": participant.registry_body,
        "registry_number": participant.registry_number,
        "rne": participant.rne,
    }


def canonical_note_bytes(note: ClinicalNote, *, signed_at: dt.datetime | None = None) -> bytes:
    """The exact bytes a note's signature covers: content (diagnoses and prescriptions included) and metadata."""
    moment = signed_at or note.signed_at
    if moment is None:
        raise ValueError("A note's canonical form needs its signing time.")
    return _canonical(
        {
            "type": "teleconsult.clinical_note/1",
            "note_id": note.pk,
            "encounter_id": note.encounter_id,
            "patient_id": note.patient_id,
            "author": _author_registry(note),
            "signed_at": _iso(moment),
            "content": note_content(note),
        }
    )


def canonical_amendment_bytes(amendment: NoteAmendment) -> bytes:
    return _canonical(
        {
            "type": "teleconsult.note_amendment/1",
            "note_id": amendment.note_id,
            "note_content_sha256": amendment.note.content_sha256,
            "patient_id": amendment.note.patient_id,
            "author": {
                "name": amendment.author_name,
                "profession": amendment.author_profession,
                "registry_body": amendment.author_registry_body,
                "registry_number": amendment.author_registry_number,
                "rne": amendment.author_rne,
            },
            "created_at": _iso(amendment.created_at),
            "reason": amendment.reason,
            "text": amendment.text,
        }
    )


def _require_fresh_second_factor(reauthenticated: bool) -> None:
    if reauthenticated is not True:
        raise ValidationError(
            _("Para firmar, confirme su identidad otra vez con su segundo factor."), code="reauth_required"
        )


def _unacknowledged_alerts(note: ClinicalNote, content: dict[str, Any]) -> list[tuple[str, Alert]]:
    return unacknowledged_alerts(note_id=note.pk, patient=note.patient, prescriptions=content["prescriptions"])


@transaction.atomic
def note_sign(*, note: ClinicalNote, signer: User, reauthenticated: bool) -> ClinicalNote:
    """Sign and lock the author's note. Refused without a fresh second factor, with sections missing, or
    while a prescription alert is unacknowledged."""
    _require_fresh_second_factor(reauthenticated)
    locked = ClinicalNote.objects.select_for_update().get(pk=note.pk)
    if locked.status == NoteStatus.SIGNED:
        raise ValidationError(_("La nota ya está firmada."), code="signed")
    if locked.author_id != signer.pk:
        raise ValidationError(_("Solo el autor firma su nota."), code="not_author")
    content = note_content(locked)
    missing = missing_sections_for_signing(content)
    if missing:
        raise ValidationError(
            _("Complete antes de firmar: %(sections)s.") % {"sections": "; ".join(missing)}, code="missing_sections"
        )
    if _unacknowledged_alerts(locked, content):
        raise ValidationError(
            _("Hay alertas de la receta sin confirmar: revíselas e indique el motivo antes de firmar."),
            code="unacknowledged_alerts",
        )
    key = _active_key(signer)
    signed_at = timezone.now()
    data = canonical_note_bytes(locked, signed_at=signed_at)
    locked.status = NoteStatus.SIGNED
    locked.signed_at = signed_at
    locked.signed_by = signer
    locked.content_sha256 = hashlib.sha256(data).hexdigest()
    locked.signature = _sign(_load_private(key), data)
    locked.signature_algorithm = key.algorithm
    locked.certificate_pem = key.certificate_pem
    locked.updated_at = signed_at
    locked.save(
        update_fields=[
            "status",
            "signed_at",
            "signed_by",
            "content_sha256",
            "signature",
            "signature_algorithm",
            "certificate_pem",
            "updated_at",
        ]
    )
    audit.record(
        action=AuditAction.NOTE_SIGNED,
        purpose=Purpose.TREATMENT,
        actor_user_id=signer.pk,
        actor_role=signer.role,
        patient_id=locked.patient_id,
        object_type="note",
        object_id=locked.pk,
        details={"algorithm": key.algorithm, "signing_key": key.pk, "sha256": locked.content_sha256},
    )
    return locked


@transaction.atomic
def amendment_add(*, note: ClinicalNote, author: User, reason: str, text: str, reauthenticated: bool) -> NoteAmendment:
    """A signed correction of a signed note; the original stays as it was signed."""
    _require_fresh_second_factor(reauthenticated)
    profile = _profile(author)
    reason, text = (reason or "").strip(), (text or "").strip()
    errors = {}
    if len(reason) < 5 or len(reason) > 1000:
        errors["reason"] = _("Explique el motivo de la enmienda (entre 5 y 1000 caracteres).")
    if not text or len(text) > MAX_AMENDMENT_LENGTH:
        errors["text"] = _("Escriba la enmienda (hasta %(max)d caracteres).") % {"max": MAX_AMENDMENT_LENGTH}
    if errors:
        raise ValidationError(errors)
    original = ClinicalNote.objects.get(pk=note.pk)
    if original.status != NoteStatus.SIGNED:
        raise ValidationError(_("Solo se enmienda una nota firmada; un borrador se edita."), code="not_signed")
    key = _active_key(author)
    amendment = NoteAmendment(
        note=original,
        author=author,
        author_name=author.full_name,
        author_profession=profile.profession,
        author_registry_body=profile.registry_body,
        author_registry_number=profile.registry_number,
        author_rne=profile.rne,
        reason=reason,
        text=text,
        created_at=timezone.now(),
        signature_algorithm=key.algorithm,
        certificate_pem=key.certificate_pem,
    )
    data = canonical_amendment_bytes(amendment)
    amendment.content_sha256 = hashlib.sha256(data).hexdigest()
    amendment.signature = _sign(_load_private(key), data)
    amendment.save()
    audit.record(
        action=AuditAction.NOTE_AMENDED,
        purpose=Purpose.TREATMENT,
        actor_user_id=author.pk,
        actor_role=author.role,
        patient_id=original.patient_id,
        object_type="note",
        object_id=original.pk,
        details={"amendment": amendment.pk, "algorithm": key.algorithm, "signing_key": key.pk},
    )
    return amendment


# --- verification ---


def verify_note(note: ClinicalNote) -> bool:
    """The stored content and metadata still hash to what was signed, and the signature matches the certificate."""
    if note.status != NoteStatus.SIGNED or note.signature is None or note.signed_at is None:
        return False
    try:
        data = canonical_note_bytes(note)
    except (ValueError, ValidationError):
        return False
    if hashlib.sha256(data).hexdigest() != note.content_sha256:
        return False
    return _verify(note.certificate_pem, note.signature_algorithm, bytes(note.signature), data)


def verify_amendment(amendment: NoteAmendment) -> bool:
    try:
        data = canonical_amendment_bytes(amendment)
    except ValueError:
        return False
    if hashlib.sha256(data).hexdigest() != amendment.content_sha256:
        return False
    return _verify(amendment.certificate_pem, amendment.signature_algorithm, bytes(amendment.signature), data)
