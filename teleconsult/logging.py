"""Logging helpers: every record carries the request id, and the formatters keep personal data out (SEC-6).

Three layers, because one slip anywhere must not put a patient's data in a log shipped off the machine:
our own code logs ids and route patterns only; the formatters print a record's own fields plus a short list
of known-safe extra fields (a stray `extra={"email": ...}` or Django's `request` object never reach the
output); and whatever text does get through has e-mail addresses and DNI-shaped numbers masked.
Exception messages are withheld from tracebacks: database errors quote the offending values (PostgreSQL's
"Key (email)=(...) already exists"), so only the exception class and the stack frames are logged.
"""

from __future__ import annotations

import logging
import re
import traceback
from types import TracebackType
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from teleconsult import request_context

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]

_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# A DNI has 8 digits; a run of exactly 8 digits not inside a longer number is masked wherever it appears.
_DNI = re.compile(r"(?<![\w.])\d{8}(?!\w)")

# Extra fields (logger.info(..., extra={...})) that may appear in the JSON output. Ids, codes, counts and
# timings only; add a name here when a new one is needed, and make sure it can never hold personal data.
SAFE_EXTRA_FIELDS = frozenset(
    {
        "method",
        "route",
        "status",
        "duration_ms",
        "action",
        "outcome",
        "command",
        "worker",
        "exit_code",
        "restart_in_s",
        "check",
        "event_count",
        "batch_id",
    }
)
# Ids are pseudonymous keys into our own database (the audit trail resolves them for auditors).
_SAFE_EXTRA_SUFFIXES = ("_id", "_count", "_ms", "_seconds")


def redact(text: str) -> str:
    """Mask e-mail addresses and DNI-shaped numbers (the last line of defence, not the first)."""
    return _DNI.sub("[dni?]", _EMAIL.sub("[email]", text))


def safe_traceback(exc_info: ExcInfo) -> str:
    """A traceback with every frame but without the exception messages (which can quote data)."""
    exc_type, exc_value, _ = exc_info
    if exc_type is None or exc_value is None:
        return ""
    # Walk from the outermost exception inwards, noting how each one is linked to the next (as Python does).
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc_value
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if current.__cause__ is not None:
            chain.append((current, "The above exception was the direct cause of the following exception:"))
            current = current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            chain.append((current, "During handling of the above exception, another exception occurred:"))
            current = current.__context__
        else:
            chain.append((current, ""))
            current = None
    lines: list[str] = []
    # Printed root cause first, like Python's own tracebacks.
    for exception, link in reversed(chain):
        if link:
            lines += ["", link, ""]
        lines.append("Traceback (most recent call last):")
        lines += [entry.rstrip("\n") for entry in traceback.format_list(traceback.extract_tb(exception.__traceback__))]
        kind = type(exception)
        lines.append(f"{kind.__module__}.{kind.__qualname__}: (message withheld)")
    return "\n".join(lines)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = request_context.current()
        record.request_id = context.request_id if context else "-"
        return True


class TextFormatter(logging.Formatter):
    """Human-readable lines for development consoles, with the same protections as the JSON output."""

    def formatException(self, ei: Any) -> str:
        return safe_traceback(ei)

    def format(self, record: logging.LogRecord) -> str:
        # Never reuse a traceback text cached on the record by some other formatter.
        record.exc_text = None
        return redact(super().format(record))


class JsonFormatter(_JsonFormatter):
    """One JSON object per line for production: time, level, logger, message, request id, safe extras."""

    def formatException(self, ei: Any) -> str:
        return safe_traceback(ei)

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None
        return super().format(record)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        allowed = {self._get_rename(field) for field in self._required_fields} | {"exc_info", "stack_info"}
        for key in list(log_data):
            if key in allowed or key in SAFE_EXTRA_FIELDS or key.endswith(_SAFE_EXTRA_SUFFIXES):
                continue
            del log_data[key]

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {key: redact(value) if isinstance(value, str) else value for key, value in log_data.items()}
