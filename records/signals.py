"""Signals records sends so that higher apps can react without records importing them."""

from django.dispatch import Signal

# Sent after the commit of a consent revocation, with `patient_id` and `kind` (a ConsentKind value): the video
# app stops a recording of that patient's visit that the revoked consent covered (CON-4).
consent_revoked = Signal()

# Sent inside the purge's transaction (records.retention.purge_expired), with `patient_id` and `now`, for each patient
# whose record is anonymised because its retention ended (SEC-5) and no legal hold is open. Receivers destroy the
# patient's personal data that other apps keep (the video app: the recordings' files and keys) in that same
# transaction; one that raises makes the whole purge fail and change nothing.
patient_anonymised = Signal()
