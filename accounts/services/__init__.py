"""Writes for identities: `from accounts import services` gives every service function of the app."""

from accounts.services.identities import (
    establishment_create,
    membership_add,
    membership_remove,
    user_change_password,
    user_change_role,
    user_create,
    user_deactivate,
    user_reactivate,
    user_reset_second_factor,
)
from accounts.services.signin import (
    backup_codes_generate,
    otp_check,
    password_change_refused,
    reauth_check,
    session_expired_record,
    signin_check_password,
    signin_record_success,
    signout_record,
    totp_device_start,
    totp_enrolment_confirm,
)

__all__ = [
    "backup_codes_generate",
    "establishment_create",
    "membership_add",
    "membership_remove",
    "otp_check",
    "password_change_refused",
    "reauth_check",
    "session_expired_record",
    "signin_check_password",
    "signin_record_success",
    "signout_record",
    "totp_device_start",
    "totp_enrolment_confirm",
    "user_change_password",
    "user_change_role",
    "user_create",
    "user_deactivate",
    "user_reactivate",
    "user_reset_second_factor",
]
