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

# Sent by the encounter's note page (records.views.clinical.editor) with `request`, `user` and `encounter`. Each
# receiver returns an HTML section (safe, already rendered and gated by its app) or "" for nothing; the page shows
# them after the note. How apps above records show what they keep of an encounter (the video app: its recordings)
# without records importing them.
encounter_page_sections = Signal()
