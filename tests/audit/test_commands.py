"""`manage.py audit_seal` and `manage.py audit_verify`, run as the operator and the worker run them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from audit.models import AuditEvent, AuditSeal
from tests.audit.support import triggers_off, wait_for_horizon, write_events
from tests.support import database_url

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(settings.BASE_DIR)


def _environment() -> dict[str, str]:
    """The test database, for a child process (it runs outside the test's process)."""
    return {**os.environ, "DATABASE_URL": database_url(connection.settings_dict), "LOG_LEVEL": "WARNING"}


def _manage(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_audit_verify_seals_first_and_exits_zero_on_an_intact_trail():
    write_events(4)
    wait_for_horizon()
    result = _manage("audit_verify")
    assert result.returncode == 0, result.stderr
    assert "4 events (4 sealed in 1 seals, 0 pending)" in result.stdout
    assert "Audit trail intact. Head: seal #1 " in result.stdout
    # The verification itself is audited, as a system action.
    assert AuditEvent.objects.filter(action="audit.trail.verified", outcome="success").count() == 1


def test_audit_verify_exits_non_zero_naming_the_first_bad_event():
    events = write_events(3)
    wait_for_horizon()
    assert _manage("audit_verify", "--no-record").returncode == 0
    with triggers_off() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    result = _manage("audit_verify")
    assert result.returncode == 1
    assert f"Audit trail NOT intact. Event {events[1].pk}: row deleted" in result.stderr
    failure = AuditEvent.objects.get(action="audit.trail.verified", outcome="failure")
    assert failure.details["first_bad_event"] == events[1].pk


def test_audit_verify_checks_an_anchor_and_refuses_a_malformed_one():
    write_events(2)
    wait_for_horizon()
    first = _manage("audit_verify", "--no-record")
    head = first.stdout.strip().rsplit("Head: seal #", 1)[1].replace(" ", ":")
    assert _manage("audit_verify", "--no-record", "--anchor", head).returncode == 0
    assert _manage("audit_verify", "--no-record", "--anchor", "1:zz").returncode != 0
    wrong = _manage("audit_verify", "--no-record", "--anchor", "1:" + "00" * 32)
    assert wrong.returncode == 1 and "differs from the anchor" in wrong.stderr


def test_audit_verify_no_seal_leaves_events_pending():
    write_events(2)
    result = _manage("audit_verify", "--no-seal", "--no-record")
    assert result.returncode == 0 and "2 pending" in result.stdout
    assert not AuditSeal.objects.exists()


def test_audit_seal_once():
    write_events(3)
    wait_for_horizon()
    result = _manage("audit_seal")
    assert result.returncode == 0 and "Sealed 3 events in 1 seals." in result.stdout


def test_audit_seal_every_keeps_sealing_until_terminated():
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "audit_seal", "--every", "1"],
        cwd=ROOT,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for expected in (2, 5):
            write_events(expected - AuditEvent.objects.count())
            deadline = time.monotonic() + 60
            while sum(len(s.event_ids) for s in AuditSeal.objects.all()) < expected:
                assert time.monotonic() < deadline, "the sealing loop did not seal the new events"
                assert worker.poll() is None, worker.communicate()
                time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert AuditSeal.objects.count() == 2


def test_audit_seal_refuses_a_too_short_interval():
    result = _manage("audit_seal", "--every", "0.1")
    assert result.returncode != 0 and "--every must be at least 1 second" in result.stderr
