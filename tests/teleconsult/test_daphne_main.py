"""daphne as every part of the platform starts it (`python -m teleconsult.daphne_main`, teleconsult/daphne_main.py)
serves on uvloop; the stock `python -m daphne` would not, and a loop policy set after daphne made its loop is
refused rather than silently ignored."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from tests.video.daphne_processes import free_port

ROOT = Path(settings.BASE_DIR)
PROBE = "tests.teleconsult.loop_probe:application"


@contextmanager
def _daphne(module: str) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", module, "-b", "127.0.0.1", "-p", str(port), PROBE],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None:
                    assert process.stderr is not None
                    raise AssertionError(process.stderr.read().decode()) from None
                if time.monotonic() > deadline:
                    raise AssertionError("daphne did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(20)


def _served_loop(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return response.read().decode()


def test_daphne_started_as_production_serves_on_uvloop():
    with _daphne("teleconsult.daphne_main") as port:
        assert _served_loop(port) == "uvloop.Loop"


def test_stock_daphne_serves_on_asyncio_loop():
    # The other half of the pair: the probe tells the loops apart, so the test above can fail.
    with _daphne("daphne") as port:
        assert _served_loop(port) == "asyncio.unix_events._UnixSelectorEventLoop"


def test_policy_set_after_daphne_made_its_loop_is_refused():
    result = subprocess.run(
        [sys.executable, "-c", "import daphne.server; from teleconsult import daphne_main; daphne_main.main()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "set the loop policy before importing daphne.server" in result.stderr


def test_the_image_starts_daphne_through_the_launcher():
    dockerfile = (ROOT / "Dockerfile").read_text()
    (command,) = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    assert command.startswith('CMD ["python", "-m", "teleconsult.daphne_main", ')
