"""daphne processes for tests, started as production starts them (`python -m teleconsult.daphne_main`, on uvloop)
on this test's database, keys and Redis, each in its own process group; stopped (and the test's connections
closed) on leaving."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from django.conf import settings
from django.db import connection, connections

from teleconsult import daphne_main


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def daphne_env(redis_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a daphne process needs to serve this test's database with this test's keys and Redis."""
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return (
        dict(os.environ)
        | {
            "DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": redis_url,
            "SECRET_KEY": settings.SECRET_KEY,
            "TELECONSULT_KEK": base64.b64encode(settings.TELECONSULT_KEK).decode(),
            "TELECONSULT_AUDIT_KEY": base64.b64encode(settings.TELECONSULT_AUDIT_KEY).decode(),
            "TELECONSULT_INDEX_KEY": base64.b64encode(settings.TELECONSULT_INDEX_KEY).decode(),
            "ACCESS_LOG_LEVEL": "WARNING",
        }
        | dict(extra or {})
    )


def _wait_until_healthy(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"daphne exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError("daphne did not start")
        time.sleep(0.2)


@contextlib.contextmanager
def daphne_processes(
    count: int, *, redis_url: str, extra_env: Mapping[str, str] | None = None, log: Path | None = None
) -> Iterator[list[int]]:
    """`count` daphne processes on 127.0.0.1 sharing this test's database and Redis; yields their ports once each
    answers /healthz. With `log`, their stderr (daphne's and the application's log) goes to that file."""
    with running_daphnes(count, redis_url=redis_url, extra_env=extra_env, log=log) as running:
        yield [port for port, _process in running]


@contextlib.contextmanager
def running_daphnes(
    count: int, *, redis_url: str, extra_env: Mapping[str, str] | None = None, log: Path | None = None
) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    """daphne_processes, yielding each port with its process (for a test that signals a process itself)."""
    env = daphne_env(redis_url, extra_env)
    ports = [free_port() for _ in range(count)]
    stderr = log.open("ab") if log is not None else None
    processes = [
        subprocess.Popen(
            daphne_main.command("-b", "127.0.0.1", "-p", str(port), "teleconsult.asgi:application"),
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr if stderr is not None else subprocess.DEVNULL,
            start_new_session=True,
        )
        for port in ports
    ]
    try:
        for port, process in zip(ports, processes, strict=True):
            _wait_until_healthy(port, process)
        yield list(zip(ports, processes, strict=True))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                # A process that does not finish stopping is ended as an orchestrator would after its grace
                # period; what the test checked is already decided.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if stderr is not None:
            stderr.close()
        connections.close_all()


async def next_frame(ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next frame of `kind` on a client's websocket to one of these processes, skipping the others."""
    while True:
        message = await ws.receive(timeout=timeout)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data = json.loads(message.data)
        if data["type"] == kind:
            return dict(data)
