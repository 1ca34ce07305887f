"""daphne as every part of the platform starts it (`python -m teleconsult.daphne_main`, teleconsult/daphne_main.py)
serves on uvloop, where the stock `python -m daphne` would not; a loop policy set after daphne made its loop is
refused rather than silently ignored; autobahn's per-frame debug values are computed only when a line is logged,
and then read the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from teleconsult import daphne_main
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


def _probe(port: int) -> dict[str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        return dict(json.loads(response.read()))


def test_daphne_started_as_production_serves_on_uvloop():
    with _daphne("teleconsult.daphne_main") as port:
        assert _probe(port) == {"loop": "uvloop.Loop", "autobahn_hltype": "_Deferred"}


def test_stock_daphne_serves_on_asyncio_loop():
    # The other half of the pair: the probe tells the loops apart, so the test above can fail.
    with _daphne("daphne") as port:
        assert _probe(port) == {"loop": "asyncio.unix_events._UnixSelectorEventLoop", "autobahn_hltype": "function"}


def _probe_application():
    from tests.teleconsult.loop_probe import application

    return application


def test_a_forked_daphne_process_serves_on_uvloop_too():
    # daphne.testing's forked server, which the network-test and pre-call tests and two benchmarks use.
    server = daphne_main.daphne_process(host="127.0.0.1", get_application=_probe_application, kwargs={"verbosity": 0})
    server.daemon = True
    server.start()
    try:
        assert server.ready.wait(30)
        assert _probe(server.port.value) == {"loop": "uvloop.Loop", "autobahn_hltype": "_Deferred"}
    finally:
        server.terminate()
        server.join(10)


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


class _Peer:
    """A value that counts how often it is turned into text."""

    def __init__(self) -> None:
        self.formatted = 0

    def __format__(self, spec: str) -> str:
        self.formatted += 1
        return format("tcp4:127.0.0.1:50000", spec)


@pytest.fixture
def deferred_autobahn(monkeypatch):
    """autobahn's websocket modules as daphne_main leaves them; put back as they were afterwards."""
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    for module in (protocol, twisted_websocket):
        for name in ("hltype", "hlval"):
            monkeypatch.setattr(module, name, getattr(module, name))
    daphne_main.defer_autobahn_debug_values()
    return twisted_websocket


def test_autobahn_debug_values_are_not_computed_when_debug_is_off(deferred_autobahn):
    import txaio

    log = txaio.make_logger()
    assert txaio.get_global_log_level() != "debug"
    peer = _Peer()
    # As autobahn's dataReceived logs every frame.
    log.debug("{peer} {data_len}", peer=deferred_autobahn.hlval(peer), data_len=deferred_autobahn.hlval(2500))
    assert peer.formatted == 0


def test_autobahn_highlighters_format_their_values_at_once():
    # The other half of the pair: the same call on autobahn's own highlighter formats the value straight away.
    from autobahn import util

    peer = _Peer()
    util.hlval(peer)
    assert peer.formatted == 1


def test_a_logged_autobahn_debug_line_reads_the_same(deferred_autobahn):
    from autobahn import util
    from twisted.logger import formatEvent

    protocol = deferred_autobahn.WebSocketServerProtocol()
    line = '{func} received {data_len} bytes for peer="{peer}"'
    deferred = formatEvent(
        {
            "log_format": line,
            "func": deferred_autobahn.hltype(protocol.dataReceived),
            "peer": deferred_autobahn.hlval(_Peer()),
            "data_len": deferred_autobahn.hlval(2500),
        }
    )
    eager = formatEvent(
        {
            "log_format": line,
            "func": util.hltype(protocol.dataReceived),
            "peer": util.hlval(_Peer()),
            "data_len": util.hlval(2500),
        }
    )
    assert deferred == eager
    assert "WebSocketAdapterProtocol.dataReceived" in deferred
    assert "tcp4:127.0.0.1:50000" in deferred
