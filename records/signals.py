"""Signals records sends so that higher apps can react without records importing them."""

from django.dispatch import Signal

# Sent after the commit of a consent revocation, with `patient_id` and `kind` (a ConsentKind value): the video
# app stops a recording of that patient's visit that the revoked consent covered (CON-4).
consent_revoked = Signal()
