"""HTTP endpoints of the video app: the pre-call check's offer → answer exchange (VID-5)."""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from scheduling import joinlinks

# An offer with audio, video and a data channel is 3-8 KB (Chrome, Safari, aiortc); more is not an offer.
MAX_SDP_CHARS = 16_384
MAX_BODY_BYTES = MAX_SDP_CHARS + 1024
# Per session (signed-in or link session): this many tests within RATE_WINDOW_SECONDS.
RATE_LIMIT = 6
RATE_WINDOW_SECONDS = 600

# Recent test start times per session, in this process (the peers themselves are per process too).
_recent: dict[str, deque[float]] = {}


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": code, "message": message}, status=status)


def _may_test(request: HttpRequest, user: object) -> bool:
    """Signed in (staff with the second factor verified; the middleware sends others to it), or a verified
    link session whose link is still live."""
    if getattr(user, "is_authenticated", False):
        return True
    return joinlinks.participant_from_link_session(request.session) is not None


def _rate_limited(session_key: str) -> bool:
    now = time.monotonic()
    key = hashlib.sha256(session_key.encode()).hexdigest()  # no session key kept in memory as is
    times = _recent.setdefault(key, deque())
    while times and now - times[0] > RATE_WINDOW_SECONDS:
        times.popleft()
    if len(times) >= RATE_LIMIT:
        return True
    times.append(now)
    if len(_recent) > 10_000:  # forget idle sessions so the table stays small
        for stale in [k for k, v in _recent.items() if not v or now - v[-1] > RATE_WINDOW_SECONDS]:
            del _recent[stale]
    return False


def _refund(session_key: str) -> None:
    """A test refused because the server was busy never started: it does not count against the caller's limit
    (an unusable offer does: parsing it cost the server work)."""
    times = _recent.get(hashlib.sha256(session_key.encode()).hexdigest())
    if times:
        times.pop()


@require_POST
async def network_test_offer(request: HttpRequest) -> JsonResponse:
    """POST {"sdp": ..., "type": "offer"} → {"sdp": ..., "type": "answer"} from a server-side echo peer."""
    user = await request.auser()
    if not await sync_to_async(_may_test)(request, user):
        return _error(403, "forbidden", _("Ingrese o abra su enlace de cita para probar su conexión."))
    declared = request.headers.get("Content-Length", "0")
    if not declared.isdigit() or int(declared) > MAX_BODY_BYTES or len(request.body) > MAX_BODY_BYTES:
        return _error(400, "too_large", _("La oferta de conexión es demasiado grande."))
    try:
        payload = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "malformed", _("La solicitud no es JSON válido."))
    if not isinstance(payload, dict) or set(payload) != {"sdp", "type"}:
        return _error(400, "malformed", _("La solicitud debe tener exactamente los campos «sdp» y «type»."))
    sdp, kind = payload["sdp"], payload["type"]
    if kind != "offer":
        return _error(400, "wrong_type", _("Solo se acepta una oferta (type «offer»)."))
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        return _error(400, "malformed", _("La oferta de conexión no es una descripción SDP válida."))
    if len(sdp) > MAX_SDP_CHARS:
        return _error(400, "too_large", _("La oferta de conexión es demasiado grande."))
    session_key = request.session.session_key
    if session_key is None or _rate_limited(session_key):
        return _error(429, "rate_limited", _("Hizo demasiadas pruebas seguidas. Espere unos minutos."))
    # Imported here: aiortc and its codecs load on the first test, not at every process start.
    from video import network_test

    try:
        answer, _peer = await network_test.network_test_answer(sdp=sdp)
    except network_test.NetworkTestBusy:
        _refund(session_key)
        response = _error(503, "busy", _("Hay muchas pruebas de conexión en curso. Intente de nuevo en un minuto."))
        response["Retry-After"] = str(settings.NETWORK_TEST_SECONDS)
        return response
    except network_test.NetworkTestRefused:
        return _error(400, "malformed", _("La oferta de conexión no es una descripción SDP válida."))
    return JsonResponse({"sdp": answer.sdp, "type": answer.type})
