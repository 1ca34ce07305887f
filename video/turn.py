"""ICE servers for a visit's participants, with short-lived TURN credentials (VID-6).

coturn's shared-secret scheme (`use-auth-secret`, "TURN REST API"): the username is "<unix expiry>:<opaque
token>" and the password is base64(HMAC-SHA1(secret, username)). coturn recomputes the HMAC with the same
secret and refuses the username once its expiry has passed, so credentials need no database on either side
and leak nothing lasting. The token names the participant to whoever holds the server's keys (to match a
coturn log line to a visit) and to nobody else: it carries no name, e-mail or document number.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.crypto import salted_hmac

if TYPE_CHECKING:
    from scheduling.models import AppointmentParticipant


def participant_token(participant: AppointmentParticipant) -> str:
    """An opaque, stable token for one participant of one visit (a participant row belongs to one appointment)."""
    digest = salted_hmac("video.turn.participant", str(participant.pk), algorithm="sha256").digest()
    return base64.b32encode(digest[:15]).decode().lower()


def turn_credential(username: str, *, secret: str | None = None) -> str:
    """The password coturn expects for `username`: base64(HMAC-SHA1(static-auth-secret, username))."""
    key = (secret if secret is not None else settings.TURN_SECRET or "").encode()
    return base64.b64encode(hmac.new(key, username.encode(), hashlib.sha1).digest()).decode()


def turn_username(token: str, *, now: float | None = None, ttl: int | None = None) -> str:
    expiry = int(now if now is not None else time.time()) + (ttl if ttl is not None else settings.TURN_CREDENTIAL_TTL)
    return f"{expiry}:{token}"


def ice_servers_for_token(token: str, *, now: float | None = None) -> list[dict[str, object]]:
    """RTCIceServer dictionaries for a browser or an aiortc peer: STUN as configured, TURN with fresh credentials."""
    servers: list[dict[str, object]] = []
    for server in settings.ICE_SERVERS:
        urls = list(server["urls"])
        if any(url.startswith("turn") for url in urls):
            username = turn_username(token, now=now)
            servers.append({"urls": urls, "username": username, "credential": turn_credential(username)})
        else:
            servers.append({"urls": urls})
    return servers


def ice_servers_for(participant: AppointmentParticipant, *, now: float | None = None) -> list[dict[str, object]]:
    """The ICE servers one participant of one visit uses (the signalling consumer sends them on join)."""
    return ice_servers_for_token(participant_token(participant), now=now)


def credential_is_valid(username: str, credential: str, *, now: float | None = None) -> bool:
    """What coturn checks, for tests and diagnostics: the HMAC matches and the expiry has not passed."""
    expiry, _, token = username.partition(":")
    if not expiry.isdigit() or not token:
        return False
    if int(expiry) < (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(turn_credential(username), credential)
