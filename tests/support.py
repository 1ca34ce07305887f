"""Helpers shared by tests that start child processes (commands, servers) on the test database."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for the test database, whether it is reached over TCP or a Unix socket (embedded)."""
    user = quote(settings_dict.get("USER") or "postgres")
    password = settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{quote(password)}" if password else user
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    name = settings_dict["NAME"]
    if str(host).startswith("/"):
        # A socket directory: libpq takes it as the host parameter of an otherwise host-less URL.
        return f"postgresql://{credentials}@/{name}?host={quote(str(host))}&port={port}"
    return f"postgresql://{credentials}@{host}:{port}/{name}"
