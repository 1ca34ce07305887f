"""Consent services and gates (CON-1..5): publish versions, record decisions, answer "may the visit start?"."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from audit import services as audit
from audit.actions import AuditAction, Purpose
from records.models import ConsentDecision, ConsentDocument, ConsentKind, ConsentMethod, Decision, Patient
from records.models.consent import RECORDING_KINDS
from records.signals import consent_revoked
from teleconsult.prepared import statement_cursor

MAX_SIGNATURE_BYTES = 200_000
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VISIT_KINDS = (ConsentKind.TELEMEDICINE, ConsentKind.DATA_PROCESSING)


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class OutdatedConsentVersion(ValidationError):
    """The patient was shown an older text than the current one; `current` is what to show instead."""

    def __init__(self, current: ConsentDocument) -> None:
        super().__init__(_("El texto del consentimiento cambió. Lea la versión vigente."), code="outdated_version")
        self.current = current


@transaction.atomic
def consent_document_publish(
    *, kind: ConsentKind, texts: dict[str, tuple[str, str]], validity_days: int | None, published_by: User
) -> list[ConsentDocument]:
    """Publish a new version of a consent kind, with its (title, text) per language; supersedes the old one."""
    if "es-pe" not in texts:
        raise ValidationError(_("Todo consentimiento necesita su texto en español."), code="spanish_required")
    # Serialise publishers of the same kind so two admins cannot both create "version N+1".
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('records.consent_document'), hashtext(%s))", [kind])
    latest = ConsentDocument.objects.filter(kind=kind).aggregate(v=Max("version"))["v"] or 0
    documents = []
    for language, (title, text) in texts.items():
        if not text.strip() or not title.strip():
            raise ValidationError(_("El título y el texto no pueden estar vacíos."), code="empty_text")
        document = ConsentDocument(
            kind=kind,
            version=latest + 1,
            language=language,
            title=title.strip(),
            text=text,
            text_sha256=text_digest(text),
            validity_days=validity_days,
            published_by=published_by,
        )
        document.full_clean()
        document.save()
        documents.append(document)
    audit.record(
        action=AuditAction.CONSENT_DOCUMENT_PUBLISHED,
        actor_user_id=published_by.pk,
        actor_role=published_by.role,
        object_type="consent_document",
        object_id=documents[0].pk,
        details={"kind": kind.value, "version": latest + 1, "languages": sorted(texts)},
    )
    return documents


def current_document(kind: str, language: str = "es-pe") -> ConsentDocument | None:
    """The newest version of a kind, in the language asked for (Spanish when it has no such translation)."""
    newest = ConsentDocument.objects.filter(kind=kind).aggregate(v=Max("version"))["v"]
    if newest is None:
        return None
    versions = ConsentDocument.objects.filter(kind=kind, version=newest)
    return versions.filter(language=language).first() or versions.filter(language="es-pe").first()


def _signature_png(data_url: str) -> str:
    prefix = "data:image/png;base64,"
    if not data_url.startswith(prefix):
        raise ValidationError(_("La firma debe ser una imagen PNG."), code="signature_type")
    if len(data_url) > MAX_SIGNATURE_BYTES * 4 // 3 + len(prefix) + 4:
        raise ValidationError(_("La imagen de la firma es demasiado grande."), code="signature_size")
    try:
        raw = base64.b64decode(data_url[len(prefix) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(_("La imagen de la firma está dañada."), code="signature_corrupt") from None
    if not raw.startswith(_PNG_MAGIC):
        raise ValidationError(_("La firma debe ser una imagen PNG."), code="signature_type")
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise ValidationError(_("La imagen de la firma es demasiado grande."), code="signature_size")
    return data_url


@dataclass(frozen=True)
class Representative:
    name: str
    relationship: str


@transaction.atomic
def consent_record(
    *,
    patient: Patient,
    document: ConsentDocument,
    decision: Decision,
    method: ConsentMethod,
    shown_sha256: str,
    actor: User | None,
    typed_name: str = "",
    signature_data_url: str = "",
    witness_name: str = "",
    representative: Representative | None = None,
    source_address: str | None = None,
    user_agent: str = "",
    now: dt.datetime | None = None,
) -> ConsentDecision:
    """Record one grant or revocation of the document the person was shown (which must be the current one)."""
    now = now or timezone.now()
    current = current_document(document.kind, document.language)
    if current is None or current.version != document.version:
        raise OutdatedConsentVersion(current or document)
    if shown_sha256 != document.text_sha256:
        raise OutdatedConsentVersion(current)
    if method == ConsentMethod.TYPED_NAME and len(typed_name.strip()) < 3:
        raise ValidationError(_("Escriba su nombre completo para aceptar."), code="typed_name_required")
    if method == ConsentMethod.DRAWN_SIGNATURE:
        signature_data_url = _signature_png(signature_data_url)
    if method == ConsentMethod.VERBAL_WITNESSED:
        if actor is None or not actor.is_staff_member or actor.role != "practitioner":
            raise ValidationError(
                _("El consentimiento verbal lo registra un profesional de salud."), code="verbal_actor"
            )
        if len(witness_name.strip()) < 3:
            raise ValidationError(_("Indique el nombre del testigo."), code="witness_required")
    age = (now.date() - patient.birth_date).days // 365.2425
    if age < 18 and representative is None:
        raise ValidationError(_("Para menores de edad decide su representante legal."), code="representative_required")
    row = ConsentDecision.objects.create(
        patient=patient,
        document=document,
        kind=document.kind,
        decision=decision,
        method=method,
        text_sha256=document.text_sha256,
        decided_at=now,
        valid_until=(now + dt.timedelta(days=document.validity_days))
        if decision == Decision.GRANT and document.validity_days
        else None,
        by_representative=representative is not None,
        representative_name=representative.name if representative else None,
        representative_relationship=representative.relationship[:64] if representative else "",
        typed_name=typed_name.strip() or None,
        signature_png=signature_data_url or None,
        witness_name=witness_name.strip() or None,
        recorded_by=actor,
        source_address=source_address,
        user_agent=user_agent[:300],
    )
    audit.record(
        action=AuditAction.CONSENT_GRANTED if decision == Decision.GRANT else AuditAction.CONSENT_REVOKED,
        purpose=Purpose.PATIENT_REQUEST,
        actor_user_id=actor.pk if actor else None,
        actor_role=actor.role if actor else "",
        patient_id=patient.pk,
        object_type="consent_decision",
        object_id=row.pk,
        details={"kind": document.kind, "version": document.version, "method": method.value},
    )
    if decision == Decision.REVOKE:
        patient_id, kind = patient.pk, str(document.kind)
        transaction.on_commit(lambda: consent_revoked.send(sender=ConsentDecision, patient_id=patient_id, kind=kind))
    return row


@dataclass(frozen=True)
class ConsentState:
    kind: str
    valid: bool
    reason: str  # "granted", "missing", "revoked", "expired", "superseded"
    version: int | None = None


@dataclass(frozen=True)
class Gate:
    allowed: bool
    states: dict[str, ConsentState] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        return [kind for kind, state in self.states.items() if not state.valid]


_STATE_SQL = """
WITH latest AS (
    SELECT DISTINCT ON (d.kind) d.kind, d.decision, d.valid_until, doc.version
    FROM records_consentdecision d JOIN records_consentdocument doc ON doc.id = d.document_id
    WHERE d.patient_id = %s AND d.kind = ANY(%s) AND d.decided_at <= %s
    ORDER BY d.kind, d.decided_at DESC, d.id DESC
), current AS (
    SELECT kind, max(version) AS version FROM records_consentdocument WHERE kind = ANY(%s) GROUP BY kind
)
SELECT latest.kind, latest.decision, latest.valid_until, latest.version, current.version
FROM latest LEFT JOIN current ON current.kind = latest.kind
"""


def consent_states(
    patient_id: int, kinds: tuple[str, ...], *, at: dt.datetime | None = None
) -> dict[str, ConsentState]:
    """The standing of each consent kind for a patient at a moment, in one query."""
    at = at or timezone.now()
    kinds_list = [str(k) for k in kinds]
    cursor = statement_cursor(connection)  # prepared: every visit join and every consent check runs it
    cursor.execute(_STATE_SQL, [patient_id, kinds_list, at, kinds_list])
    rows = cursor.fetchall()
    states = {kind: ConsentState(kind, False, "missing") for kind in kinds_list}
    for kind, decision, valid_until, version, current_version in rows:
        if decision == Decision.REVOKE:
            states[kind] = ConsentState(kind, False, "revoked", version)
        elif current_version is not None and version < current_version:
            states[kind] = ConsentState(kind, False, "superseded", version)
        elif valid_until is not None and valid_until <= at:
            states[kind] = ConsentState(kind, False, "expired", version)
        else:
            states[kind] = ConsentState(kind, True, "granted", version)
    return states


def may_start_visit(patient_id: int, *, at: dt.datetime | None = None) -> Gate:
    """CON-4: a visit starts only with valid telemedicine and personal-data consent."""
    states = consent_states(patient_id, VISIT_KINDS, at=at)
    return Gate(all(s.valid for s in states.values()), states)


def may_record(
    patient_ids: list[int], kinds: tuple[str, ...] = RECORDING_KINDS, *, at: dt.datetime | None = None
) -> Gate:
    """CON-4: recording only if every patient participant consented to each recording kind asked for."""
    merged: dict[str, ConsentState] = {}
    allowed = True
    for patient_id in patient_ids:
        for kind, state in consent_states(patient_id, kinds, at=at).items():
            if not state.valid:
                allowed = False
                merged[f"{patient_id}:{kind}"] = state
    return Gate(allowed and bool(patient_ids), merged)


def recording_consent_kinds(recording_kind: str) -> tuple[str, ...]:
    """The consents a visit recording of `recording_kind` needs: a video recording carries the sound too, so it
    needs both the video and the audio recording consent; an audio-only one the audio consent."""
    if recording_kind == "video":
        return (ConsentKind.RECORDING_VIDEO, ConsentKind.RECORDING_AUDIO)
    if recording_kind == "audio":
        return (ConsentKind.RECORDING_AUDIO,)
    raise ValueError(recording_kind)


def may_record_visit(patient_id: int, recording_kind: str, *, at: dt.datetime | None = None) -> Gate:
    """CON-4 for recording a visit of this patient (the staff in the call agree separately, in the call)."""
    return may_record([patient_id], recording_consent_kinds(recording_kind), at=at)
