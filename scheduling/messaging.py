"""Text messages (SMS or WhatsApp) to patients' phones: a small backend interface, chosen by SMS_BACKEND.

A provider's backend (an SMS gateway, the WhatsApp Business API) implements `send`; the two included here
are for development and tests: the console backend prints each message and the file backend appends it as
one JSON line to var/sms/messages.jsonl (the default in development, so `make run` shows what a patient
would receive). In production text messages go out only through a backend configured in SMS_BACKEND.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

DEFAULT_BACKEND = "scheduling.messaging.FileBackend"


@dataclass(frozen=True)
class TextMessage:
    # The phone number as the patient gave it; the body may carry their personal join link.
    to: str
    body: str


class MessagingError(Exception):
    """A backend could not hand the message over; the worker retries later. Say nothing personal in it."""


class BaseBackend:
    def send(self, message: TextMessage) -> None:
        raise NotImplementedError


class ConsoleBackend(BaseBackend):
    """Prints each message to standard output (development only: the body holds the patient's join link)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, message: TextMessage) -> None:
        self.stream.write(f"[SMS to {message.to}]\n{message.body}\n\n")
        self.stream.flush()


class FileBackend(BaseBackend):
    """Appends each message as a JSON line to SMS_FILE_PATH (default var/sms/messages.jsonl), readable only
    by the owner."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        configured = getattr(settings, "SMS_FILE_PATH", None)
        self.path = Path(path or configured or Path(settings.VAR_DIR) / "sms" / "messages.jsonl")

    def send(self, message: TextMessage) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = json.dumps(
            {"sent_at": timezone.now().isoformat(), "to": message.to, "body": message.body}, ensure_ascii=False
        )
        # One write of one line with O_APPEND: lines from concurrent workers never interleave.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, (line + "\n").encode("utf-8"))
        finally:
            os.close(descriptor)


def get_backend() -> BaseBackend | None:
    """The configured backend; None in production when none is configured (text messages are then skipped:
    the development file backend would keep phone numbers and join links on the server's disk)."""
    configured = getattr(settings, "SMS_BACKEND", None)
    if not configured and getattr(settings, "PRODUCTION", False):
        return None
    backend: BaseBackend = import_string(configured or DEFAULT_BACKEND)()
    return backend
