"""The visit signalling protocol, version 1: message schema, validation, close codes and the rate limit.

Every message is one JSON object {"v": 1, "type": ..., ...}; docs/signalling.md documents each one with
examples. Validation is strict: unknown types or fields, wrong types and oversized values are refused, so
nothing a client invents reaches another participant or the database.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

VERSION = 1

# Sizes (characters of the JSON text; UTF-8 beyond ASCII only makes the bytes larger, never the check looser).
MAX_SDP = 64 * 1024
MAX_CANDIDATE = 2 * 1024
MAX_CHAT = 2_000
# A whole frame: the largest legitimate message (an offer with a full SDP) plus its envelope.
MAX_FRAME = MAX_SDP + 4 * 1024
# Up to this many people in one visit (a full mesh; larger rooms need an SFU, see docs/signalling.md).
MAX_PARTICIPANTS = 4

# Per connection token bucket: a steady rate and a burst. ICE candidates cost a fraction of a token because
# a browser trickles dozens of them at once when the network changes (an ICE restart).
RATE_PER_SECOND = 50.0
RATE_BURST = 100.0
CANDIDATE_COST = 0.2
RECORDING_REQUEST_COST = 20.0


class CloseCode(IntEnum):
    """Why the server closed a visit's websocket (4000–4999 is the application range of RFC 6455)."""

    MALFORMED = 4400
    UNAUTHENTICATED = 4401
    NOT_PARTICIPANT = 4403
    UNKNOWN_VISIT = 4404
    OUTSIDE_WINDOW = 4408
    REPLACED = 4409
    ENDED = 4410
    CONSENT_MISSING = 4412
    TOO_LARGE = 4413
    ROOM_FULL = 4420
    RATE_LIMITED = 4429
    DECLINED = 4431


# The reason sent with each close (English, machine-oriented; clients show their own translated text).
CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.MALFORMED: "malformed message",
    CloseCode.UNAUTHENTICATED: "not signed in",
    CloseCode.NOT_PARTICIPANT: "not a participant of this visit",
    CloseCode.UNKNOWN_VISIT: "unknown visit",
    CloseCode.OUTSIDE_WINDOW: "outside the visit's time window",
    CloseCode.REPLACED: "replaced by a newer connection",
    CloseCode.ENDED: "visit ended",
    CloseCode.CONSENT_MISSING: "telemedicine consent missing",
    CloseCode.TOO_LARGE: "message too large",
    CloseCode.ROOM_FULL: "visit is full",
    CloseCode.RATE_LIMITED: "too many messages",
    CloseCode.DECLINED: "declined by the practitioner",
}


class ProtocolError(Exception):
    """A message the server refuses; closes the connection with `code`."""

    def __init__(self, code: CloseCode, detail: str = "") -> None:
        super().__init__(detail or CLOSE_REASONS[code])
        self.code = code
        self.detail = detail or CLOSE_REASONS[code]


# --- The schema: for each client → server type, its fields as name → (kind, required, max length) ---

_ID = ("id", True, 0)  # a participant id (positive integer)
_SCHEMA: dict[str, dict[str, tuple[str, bool, int]]] = {
    # Say hello after connecting (optional: the server greets every connection with "welcome" anyway).
    "join": {},
    # WebRTC negotiation, addressed to one participant.
    "offer": {"to": _ID, "sdp": ("str", True, MAX_SDP)},
    "answer": {"to": _ID, "sdp": ("str", True, MAX_SDP)},
    "ice": {
        "to": _ID,
        "candidate": ("str", True, MAX_CANDIDATE),  # "" is the end-of-candidates marker
        "sdpMid": ("str", False, 64),
        "sdpMLineIndex": ("int", False, 64),
        "usernameFragment": ("str", False, 256),
    },
    "leave": {},
    # Practitioner decisions about a patient in the waiting room.
    "admit": {"participant": _ID},
    "decline": {"participant": _ID},
    "chat": {"text": ("str", True, MAX_CHAT)},
    "media_state": {
        "audio": ("bool", True, 0),
        "video": ("bool", True, 0),
        "screen": ("bool", False, 0),
        "modality": ("modality", False, 0),
        "auto": ("bool", False, 0),  # the modality was the sender's link's doing, not a person's choice
    },
    "quality": {
        "rtt_ms": ("number", False, 0),
        "loss": ("number", False, 0),
        "bitrate_kbps": ("number", False, 0),
        "to": ("id", False, 0),
    },
    "end": {},
    # Recording (VID-8, docs/recording.md): a host asks or stops; the other staff in the call agree or refuse;
    # each participant's page offers one send-only connection to the recorder (its SDP with every candidate).
    "recording_start": {"kind": ("recording_kind", True, 0)},
    "recording_agree": {"recording": ("uuid", True, 0)},
    "recording_refuse": {"recording": ("uuid", True, 0)},
    "recording_stop": {},
    "recording_offer": {"recording": ("uuid", True, 0), "sdp": ("str", True, MAX_SDP)},
}
RECORDING_TYPES = frozenset(name for name in _SCHEMA if name.startswith("recording_"))
CLIENT_TYPES = frozenset(_SCHEMA)
MODALITIES = ("video", "audio", "chat")
RECORDING_KINDS = ("video", "audio")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Limits for numeric fields: absurd values are refused rather than stored or shown.
_NUMBER_MAX = 1e7


def _check(kind: str, value: Any, limit: int) -> bool:
    if kind == "id":
        return type(value) is int and 0 < value < 2**63
    if kind == "str":
        return isinstance(value, str) and len(value) <= limit
    if kind == "int":
        return type(value) is int and 0 <= value <= limit
    if kind == "bool":
        return type(value) is bool
    if kind == "number":
        return type(value) in (int, float) and 0 <= value <= _NUMBER_MAX
    if kind == "modality":
        return value in MODALITIES
    if kind == "recording_kind":
        return value in RECORDING_KINDS
    if kind == "uuid":
        return isinstance(value, str) and _UUID.fullmatch(value) is not None
    raise AssertionError(kind)


def parse(text: str | None) -> dict[str, Any]:
    """One client frame → a validated message dict; raises ProtocolError (TOO_LARGE or MALFORMED)."""
    if text is None:
        raise ProtocolError(CloseCode.MALFORMED, "binary frames are not part of the protocol")
    if len(text) > MAX_FRAME:
        raise ProtocolError(CloseCode.TOO_LARGE)
    try:
        message = json.loads(text)
    except ValueError as error:
        raise ProtocolError(CloseCode.MALFORMED, "not JSON") from error
    if not isinstance(message, dict):
        raise ProtocolError(CloseCode.MALFORMED, "not a JSON object")
    if message.get("v") != VERSION or type(message.get("v")) is not int:
        raise ProtocolError(CloseCode.MALFORMED, "unsupported protocol version")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in _SCHEMA:
        raise ProtocolError(CloseCode.MALFORMED, "unknown message type")
    fields = _SCHEMA[kind]
    extra = set(message) - set(fields) - {"v", "type"}
    if extra:
        raise ProtocolError(CloseCode.MALFORMED, f"unexpected field {sorted(extra)[0]!r}")
    for name, (field_kind, required, limit) in fields.items():
        if name not in message:
            if required:
                raise ProtocolError(CloseCode.MALFORMED, f"missing field {name!r}")
            continue
        if not _check(field_kind, message[name], limit):
            too_long = field_kind == "str" and isinstance(message[name], str)
            raise ProtocolError(CloseCode.TOO_LARGE if too_long else CloseCode.MALFORMED, f"invalid field {name!r}")
    return message


def encode(message_type: str, /, **fields: Any) -> str:
    """A server → client frame (positional-only type: recording frames have a field named `kind`)."""
    return json.dumps({"v": VERSION, "type": message_type, **fields}, separators=(",", ":"))


@dataclass
class TokenBucket:
    """A per-connection rate limit: `rate` tokens a second up to `burst`; a message takes `cost` tokens."""

    rate: float = RATE_PER_SECOND
    burst: float = RATE_BURST
    tokens: float = RATE_BURST
    updated: float = 0.0

    def take(self, cost: float = 1.0, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True


def cost_of(message: dict[str, Any]) -> float:
    kind = message["type"]
    if kind == "ice":
        return CANDIDATE_COST
    # A recording request writes rows and audit events and asks everyone in the call: it costs more, so a
    # host's page cannot flood the others with prompts.
    return RECORDING_REQUEST_COST if kind == "recording_start" else 1.0
