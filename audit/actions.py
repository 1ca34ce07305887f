"""The audit vocabulary: namespaced action codes, outcomes and purposes of use."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    """Every audited action. Codes are `<app>.<object>.<verb>`; add new ones here, never reuse a code."""

    # accounts: sign-in and identity administration
    SIGNIN_SUCCEEDED = "accounts.signin.succeeded"
    SIGNIN_FAILED = "accounts.signin.failed"
    SIGNIN_LOCKED_OUT = "accounts.signin.locked_out"
    SIGNOUT = "accounts.signout"
    SESSION_EXPIRED = "accounts.session.expired"
    OTP_VERIFIED = "accounts.otp.verified"
    OTP_FAILED = "accounts.otp.failed"
    OTP_ENROLLED = "accounts.otp.enrolled"
    OTP_RESET = "accounts.otp.reset"
    BACKUP_CODES_GENERATED = "accounts.backup_codes.generated"
    BACKUP_CODE_USED = "accounts.backup_codes.used"
    REAUTH_SUCCEEDED = "accounts.reauth.succeeded"
    REAUTH_FAILED = "accounts.reauth.failed"
    PASSWORD_CHANGED = "accounts.password.changed"  # noqa: S105 - an action code, not a password
    USER_CREATED = "accounts.user.created"
    USER_DEACTIVATED = "accounts.user.deactivated"
    USER_REACTIVATED = "accounts.user.reactivated"
    ROLE_CHANGED = "accounts.role.changed"
    MEMBERSHIP_ADDED = "accounts.membership.added"
    MEMBERSHIP_REMOVED = "accounts.membership.removed"
    ESTABLISHMENT_CREATED = "accounts.establishment.created"
    ESTABLISHMENT_UPDATED = "accounts.establishment.updated"
    # records: patients and their identity
    PATIENT_REGISTERED = "records.patient.registered"
    DUPLICATE_FLAGGED = "records.duplicate.flagged"
    CONSENT_DOCUMENT_PUBLISHED = "records.consent_document.published"
    CONSENT_GRANTED = "records.consent.granted"
    CONSENT_REVOKED = "records.consent.revoked"
    CARE_RELATIONSHIP_STARTED = "records.care_relationship.started"
    CARE_RELATIONSHIP_ENDED = "records.care_relationship.ended"
    CHART_VIEWED = "records.chart.viewed"
    CHART_ACCESS_DENIED = "records.chart.denied"
    BREAK_GLASS = "records.chart.break_glass"
    DEMOGRAPHICS_VIEWED = "records.patient.viewed"
    RIGHTS_REQUEST_FILED = "records.rights_request.filed"
    RIGHTS_REQUEST_EXTENDED = "records.rights_request.extended"
    RIGHTS_REQUEST_RESOLVED = "records.rights_request.resolved"
    PATIENT_EXPORTED = "records.patient.exported"
    PATIENT_BLOCKED = "records.patient.blocked"
    LEGAL_HOLD_PLACED = "records.legal_hold.placed"
    LEGAL_HOLD_RELEASED = "records.legal_hold.released"
    PATIENT_ANONYMISED = "records.patient.anonymised"
    PATIENT_SEARCHED = "records.patient.searched"
    PATIENT_RECTIFIED = "records.patient.rectified"
    DUPLICATE_RESOLVED = "records.duplicate.resolved"
    RIGHTS_QUEUE_VIEWED = "records.rights_queue.viewed"
    RIGHTS_REQUEST_VIEWED = "records.rights_request.viewed"
    LEGAL_REPRESENTATIVE_ADDED = "records.legal_representative.added"
    # scheduling: availability, appointments, join links and notifications
    VISIT_TYPE_CREATED = "scheduling.visit_type.created"
    VISIT_TYPE_UPDATED = "scheduling.visit_type.updated"
    AVAILABILITY_RULE_CREATED = "scheduling.availability_rule.created"
    AVAILABILITY_RULE_REMOVED = "scheduling.availability_rule.removed"
    AVAILABILITY_EXCEPTION_CREATED = "scheduling.availability_exception.created"
    AVAILABILITY_EXCEPTION_REMOVED = "scheduling.availability_exception.removed"
    APPOINTMENT_HELD = "scheduling.appointment.held"
    APPOINTMENT_HOLD_EXPIRED = "scheduling.appointment.hold_expired"
    APPOINTMENT_BOOKED = "scheduling.appointment.booked"
    APPOINTMENT_BOOKING_REFUSED = "scheduling.appointment.booking_refused"
    APPOINTMENT_RESCHEDULED = "scheduling.appointment.rescheduled"
    APPOINTMENT_CANCELLED = "scheduling.appointment.cancelled"
    APPOINTMENT_NO_SHOW = "scheduling.appointment.no_show"
    APPOINTMENT_VIEWED = "scheduling.appointment.viewed"
    APPOINTMENT_ACCESS_DENIED = "scheduling.appointment.denied"
    CALENDAR_VIEWED = "scheduling.calendar.viewed"
    JOIN_LINK_ISSUED = "scheduling.join_link.issued"
    JOIN_LINK_REVOKED = "scheduling.join_link.revoked"
    JOIN_LINK_OPENED = "scheduling.join_link.opened"
    JOIN_LINK_REFUSED = "scheduling.join_link.refused"
    JOIN_LINK_VERIFIED = "scheduling.join_link.verified"
    JOIN_LINK_VERIFICATION_FAILED = "scheduling.join_link.verification_failed"
    JOIN_LINK_RECOVERY_REQUESTED = "scheduling.join_link.recovery_requested"
    NOTIFICATION_SENT = "scheduling.notification.sent"
    NOTIFICATION_FAILED = "scheduling.notification.failed"
    # audit: the trail itself
    TRAIL_VIEWED = "audit.trail.viewed"
    TRAIL_EXPORTED = "audit.trail.exported"
    TRAIL_VERIFIED = "audit.trail.verified"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class Purpose(StrEnum):
    """Purpose of use, after HL7 v3 PurposeOfUse (TREAT, ETREAT, PATRQT, HOPERAT)."""

    TREATMENT = "treatment"
    EMERGENCY = "emergency"
    PATIENT_REQUEST = "patient_request"
    OPERATIONS = "operations"
