"""A scratch PostgreSQL database for a benchmark: created on the server named by DATABASE_URL, dropped after.

Its name carries the benchmark's process id, so two runs of one benchmark on the same server (two people, or a
run beside the tests) never drop each other's database."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    name = f"{prefix}_{os.getpid()}"
    base = os.environ.get("DATABASE_URL")
    if not base:
        raise SystemExit("Set DATABASE_URL to a PostgreSQL server the benchmark may create a database on.")
    parts = urlsplit(base)
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    scratch_url = urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = scratch_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleconsult.settings")
    try:
        yield scratch_url
    finally:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        os.environ["DATABASE_URL"] = base
