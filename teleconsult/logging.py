"""Logging helpers: every record carries the request id (never personal data)."""

from __future__ import annotations

import logging

from teleconsult import request_context


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = request_context.current()
        record.request_id = context.request_id if context else "-"
        return True
