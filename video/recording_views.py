"""Retrieving a stored recording (VID-8): gated, audited, decrypted as a stream, never cached."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from django.core.files.storage import storages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from accounts.access import role_required
from accounts.models import Role, User
from teleconsult import filecrypto
from teleconsult.crypto import CryptoError
from video.recording import FILE_PURPOSE
from video.recording_access import recording_for, recordings_listed

logger = logging.getLogger(__name__)


@role_required(Role.PRACTITIONER)
@require_GET
def recording_download(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The recording's media file, decrypted on the way out. The URL holds the recording's opaque id only."""
    user = request.user
    assert isinstance(user, User)
    recording = recording_for(user, public_id)
    storage = storages["recordings"]
    # The stored file must be the one the row describes before a byte of it is sent.
    with storage.open(recording.file_name, "rb") as stored:
        intact = filecrypto.sha256_of(cast(BinaryIO, stored)) == recording.sha256
    if not intact:
        logger.error("stored recording failed its checksum", extra={"recording": recording.pk})
        response = HttpResponse(_("La grabación no pasó la verificación de integridad."), status=409)
        add_never_cache_headers(response)
        return response
    key = base64.b64decode(recording.file_key or "")

    def chunks() -> Iterator[bytes]:
        with storage.open(recording.file_name, "rb") as stored:
            try:
                yield from filecrypto.decrypt_stream(cast(BinaryIO, stored), key=key, purpose=FILE_PURPOSE)
            except CryptoError:
                # Headers are gone already: the download is cut short, and the log says which recording.
                logger.error("stored recording failed to decrypt", extra={"recording": recording.pk})
                raise

    content_type = "video/x-matroska" if recording.kind == "video" else "audio/x-matroska"
    streamed = StreamingHttpResponse(chunks(), content_type=content_type)
    streamed["Content-Disposition"] = f'attachment; filename="grabacion-{recording.public_id}.mkv"'
    streamed["X-Content-Type-Options"] = "nosniff"
    add_never_cache_headers(streamed)
    # role_required is typed for HttpResponse; a streaming response goes through it the same way.
    return streamed  # type: ignore[return-value]


def encounter_recordings_section(*, request: HttpRequest, user: User, encounter: Any, **_: object) -> str:
    """The encounter's note page asks (records.signals.encounter_page_sections): its recordings, with their
    download links, for whoever the gate lets see them (listing audited, each download gated and audited again)."""
    recordings = recordings_listed(user, encounter_id=encounter.pk)
    if not recordings:
        return ""
    return render_to_string("video/_encounter_recordings.html", {"recordings": recordings}, request=request)
