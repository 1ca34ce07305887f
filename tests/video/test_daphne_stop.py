"""SIGTERM to a daphne process while visits relay through it (a rolling restart, `docker compose stop`): every
websocket is closed with 1001 so the pages reconnect to another process, each participant's drop is written by
their consumer's departure handling (the reconnect grace and the periodic sweep then apply), and the process exits
(teleconsult/daphne_server.py). daphne's own stop cancelled the consumers without a close or a departure, and
under load left their queued database calls to run while the interpreter exited."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from django.db import connections

from bench._visits import BookedVisit, build_visits
from teleconsult.daphne_server import GOING_AWAY
from tests.teleconsult.support import run_in_own_loop
from tests.video.daphne_processes import next_frame, running_daphnes
from tests.video.signalling_support import frame
from video.models import Presence, PresenceState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

VISITS = 10
SDP = "v=0\r\n" + "a=x\r\n" * 400  # about 2 KB, a typical offer
# Between a message received and the reply: each connection stays well under the protocol's 50 messages a second.
PACE_SECONDS = 0.05


@pytest.fixture
def daphne(redis_url, tmp_path) -> Iterator[tuple[int, subprocess.Popen[bytes], Path]]:
    log = tmp_path / "daphne.log"
    with running_daphnes(1, redis_url=redis_url, log=log) as [(port, process)]:
        yield port, process, log


async def _in_call(http: aiohttp.ClientSession, port: int, visit: BookedVisit) -> tuple[Any, Any, int, int]:
    url = f"ws://127.0.0.1:{port}{visit.path}"
    origin = {"Origin": f"http://127.0.0.1:{port}"}
    doctor = await http.ws_connect(url, headers={"Cookie": visit.doctor_cookie, **origin})
    doctor_id = (await next_frame(doctor, "welcome", timeout=20))["participant"]
    patient = await http.ws_connect(url, headers={"Cookie": visit.patient_cookie, **origin})
    patient_id = (await next_frame(patient, "welcome", timeout=20))["participant"]
    await next_frame(doctor, "waiting", timeout=20)
    await doctor.send_str(frame("admit", participant=patient_id))
    await next_frame(patient, "admitted", timeout=20)
    await next_frame(doctor, "peer_joined", timeout=20)
    return doctor, patient, doctor_id, patient_id


async def _relay_until_closed(ws: aiohttp.ClientWebSocketResponse, to: int, *, starts: bool) -> int | None:
    """Answers every offer or answer from the other side with one of its own until the server closes the websocket:
    returns the code of the server's close frame, None when the connection ended without one."""
    if starts:
        await ws.send_str(frame("offer", to=to, sdp=SDP))
    while True:
        message = await ws.receive(timeout=30)
        if message.type == aiohttp.WSMsgType.CLOSE:
            return int(message.data)
        if message.type != aiohttp.WSMsgType.TEXT:
            return None
        kind = json.loads(message.data)["type"]
        if kind in ("offer", "answer"):
            await asyncio.sleep(PACE_SECONDS)
            with contextlib.suppress(ConnectionResetError):  # the server may be closing this very moment
                await ws.send_str(frame("answer" if kind == "offer" else "offer", to=to, sdp=SDP))


def test_sigterm_closes_the_busy_websockets_writes_each_departure_and_exits(daphne):
    port, process, log = daphne
    visits = build_visits(VISITS)
    connections.close_all()

    async def scenario() -> list[int | None]:
        async with aiohttp.ClientSession() as http:
            calls = [await _in_call(http, port, visit) for visit in visits]
            relaying = [
                asyncio.ensure_future(_relay_until_closed(ws, to, starts=starts))
                for doctor, patient, doctor_id, patient_id in calls
                for ws, to, starts in ((doctor, patient_id, True), (patient, doctor_id, False))
            ]
            await asyncio.sleep(1)  # every pair relaying
            assert not any(task.done() for task in relaying)
            os.killpg(process.pid, signal.SIGTERM)
            return list(await asyncio.gather(*relaying))

    codes = run_in_own_loop(lambda: asyncio.wait_for(scenario(), 60))
    # Terminated: TimeoutExpired here is the failure (a process still stopping after 10 s).
    assert process.wait(timeout=10) == 0
    logged = log.read_text()
    assert codes == [GOING_AWAY] * (2 * VISITS), logged
    # Each drop was written as a departure (not left on a channel that no longer exists): the others hear of it
    # after the grace, from the sweep when no process is left to time it, unless the participant comes back.
    presences = Presence.objects.filter(visit__appointment__public_id__in=[visit.public_id for visit in visits])
    assert presences.count() == 2 * VISITS
    assert set(presences.values_list("state", "channel_name")) == {(PresenceState.ADMITTED, "")}
    assert "Exception inside application" not in logged, logged
