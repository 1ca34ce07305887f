"""`manage.py serve` (what `make run` starts): HTTP and HTTPS up, supervision, clean stop, clear errors."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from django.db import connection

from scheduling.models import Notification, NotificationStatus
from scheduling.notifications import appointment_event
from tests.scheduling.test_notifications import book, in_days

ROOT = Path(settings.BASE_DIR)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "serve", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a failing test can stop the whole tree
    )


def _wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float = 90) -> list[str]:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} not printed; output so far:\n{''.join(seen)}")


def _get(url: str) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the development certificate is self-signed
    with urllib.request.urlopen(url, timeout=10, context=context) as response:  # noqa: S310
        return int(response.status)


def _cmdline(child: psutil.Process) -> list[str]:
    # A worker that just exited (on the unmigrated embedded database the task worker does) is a zombie
    # until serve reaps it.
    try:
        return child.cmdline()
    except psutil.Error:
        return []


def _wait_for_children(process: subprocess.Popen[str], needle: str, timeout: float = 30) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in psutil.Process(process.pid).children() if needle in " ".join(_cmdline(c))]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no child process running {needle}")


def _kill_tree(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_serve_on_the_embedded_database_starts_supervises_and_stops_cleanly(tmp_path):
    port, tls_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"TELECONSULT_VAR_DIR": str(tmp_path)}
    process = _start(["--port", str(port), "--tls-port", str(tls_port)], env)
    try:
        banner = "".join(_wait_for_line(process, "Press Ctrl-C to stop."))
        assert f"http://localhost:{port}" in banner
        assert f":{tls_port}" in banner
        assert _get(f"http://127.0.0.1:{port}/healthz") == 200
        assert _get(f"https://127.0.0.1:{tls_port}/healthz") == 200
        assert _get(f"http://127.0.0.1:{port}/readyz") == 200
        children = psutil.Process(process.pid).children(recursive=True)
        assert any("teleconsult.daphne_main" in " ".join(child.cmdline()) for child in children)
        pgdata = tmp_path / "pgdata"
        assert (pgdata / "postmaster.pid").exists()

        # Every background worker is started (the task worker at work is checked on a migrated database
        # below); one killed outright (no chance to release its database handle) is restarted.
        assert "db_worker" in banner and "scheduling_sweep" in banner
        _wait_for_children(process, "scheduling_sweep")
        workers = _wait_for_children(process, "audit_seal")
        for worker in workers:
            worker.kill()
        _wait_for_line(process, "The worker audit_seal exited", timeout=30)
        children = psutil.Process(process.pid).children(recursive=True)

        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        _kill_tree(process)
    assert process.returncode == 0, output
    assert "Teleconsult stopped." in output
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, alive
    # The embedded PostgreSQL was stopped by the last handle (this process's) on exit.
    assert not (pgdata / "postmaster.pid").exists()
    for private in (tmp_path / "secrets.json", tmp_path / "tls" / "key.pem"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_serve_stops_everything_when_daphne_dies(tmp_path):
    port, tls_port = _free_port(), _free_port()
    env = os.environ | {"TELECONSULT_VAR_DIR": str(tmp_path)}
    process = _start(["--port", str(port), "--tls-port", str(tls_port), "--no-worker"], env)
    try:
        _wait_for_line(process, "Press Ctrl-C to stop.")
        (daphne,) = [c for c in psutil.Process(process.pid).children() if "daphne" in " ".join(c.cmdline())]
        daphne.kill()
        output, _ = process.communicate(timeout=30)
    finally:
        _kill_tree(process)
    assert process.returncode == 1
    assert "daphne exited with status" in output


def test_serve_names_a_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--tls-port", str(_free_port())],
            cwd=ROOT,
            env=os.environ | {"TELECONSULT_VAR_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "PORT=" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value", ["http", "0", "70000"])
def test_serve_rejects_a_malformed_port_variable(tmp_path, value):
    result = subprocess.run(
        [sys.executable, "manage.py", "serve"],
        cwd=ROOT,
        env=os.environ | {"TELECONSULT_VAR_DIR": str(tmp_path), "PORT": value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("Configuration error: PORT")


@pytest.mark.django_db(transaction=True)
def test_serve_runs_the_task_worker_that_sends_notifications(personas, tmp_path):
    """`make run` delivers what the application queues: a booking's confirmation reaches the mail and text
    message files under var/, sent by serve's own task worker (on this test's database and keys)."""
    booking = book(personas, start=in_days(3))
    appointment_event(appointment_id=booking.appointment.pk, event="booked")
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    env = os.environ | {
        "TELECONSULT_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "TELECONSULT_KEK": base64.b64encode(settings.TELECONSULT_KEK).decode(),
        "TELECONSULT_AUDIT_KEY": base64.b64encode(settings.TELECONSULT_AUDIT_KEY).decode(),
        "TELECONSULT_INDEX_KEY": base64.b64encode(settings.TELECONSULT_INDEX_KEY).decode(),
    }
    for name in ("EMAIL_URL", "SMS_BACKEND", "DEBUG"):
        env.pop(name, None)
    port, tls_port = _free_port(), _free_port()
    process = _start(["--port", str(port), "--tls-port", str(tls_port)], env)
    try:
        _wait_for_line(process, "Press Ctrl-C to stop.")
        confirmations = Notification.objects.filter(kind="confirmation")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and confirmations.exclude(status=NotificationStatus.SENT).exists():
            time.sleep(0.3)
        assert set(confirmations.values_list("status", flat=True)) == {NotificationStatus.SENT}
        mails = "".join(path.read_text() for path in (tmp_path / "mail").iterdir())
        assert "rosa.quispe@example.pe" in mails and "medico@example.test" in mails
        (sms,) = [json.loads(line) for line in (tmp_path / "sms" / "messages.jsonl").read_text().splitlines()]
        assert booking.patient_token in sms["body"]

        (task_worker,) = _wait_for_children(process, "db_worker")
        task_worker.kill()
        _wait_for_line(process, "The worker db_worker exited", timeout=30)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        _kill_tree(process)
    assert process.returncode == 0, output
    # The worker's own output names no token.
    assert booking.patient_token not in output
