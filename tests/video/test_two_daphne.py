"""Two daphne processes sharing Redis serve one visit (VID-1): the patient on one, the practitioner on the other,
and every message of the protocol crosses between them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import pytest
from django.db import connections

from records.models import Encounter, EncounterStatus
from scheduling.models import AppointmentStatus
from tests.teleconsult.support import run_in_own_loop
from tests.video.daphne_processes import daphne_processes, next_frame
from tests.video.signalling_support import frame, make_visit, signed_in_cookie
from video.models import ChatMessage
from video.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" + "a=x\r\n" * 400  # about 2.5 KB


@pytest.fixture
def two_daphnes(redis_url, settings) -> Iterator[tuple[int, int]]:
    """Two daphne processes (as production runs them) on this test's database and keys, sharing Redis."""
    if settings.CHANNEL_LAYERS["default"]["BACKEND"] != "teleconsult.channel_layer.PooledRedisChannelLayer":
        pytest.fail("REDIS_URL must configure the Redis channel layer for this test")
    with daphne_processes(2, redis_url=redis_url, extra_env={"VIDEO_RECONNECT_GRACE_SECONDS": "2"}) as (first, second):
        yield first, second


async def _close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    while True:
        message = await ws.receive(timeout=10)
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code


def test_patient_and_practitioner_on_different_processes(personas, two_daphnes):
    visit = make_visit(personas)
    doctor_cookie = signed_in_cookie(personas.practitioner)
    patient_cookie = signed_in_cookie(personas.patient)
    connections.close_all()
    port_a, port_b = two_daphnes
    path = f"/ws/visit/{visit.appointment.public_id}/"

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            doctor = await http.ws_connect(
                f"ws://127.0.0.1:{port_a}{path}",
                headers={"Cookie": doctor_cookie, "Origin": f"http://127.0.0.1:{port_a}"},
            )
            doctor_id = (await next_frame(doctor, "welcome"))["participant"]
            patient = await http.ws_connect(
                f"ws://127.0.0.1:{port_b}{path}",
                headers={"Cookie": patient_cookie, "Origin": f"http://127.0.0.1:{port_b}"},
            )
            welcome = await next_frame(patient, "welcome")
            assert welcome["state"] == "waiting"
            patient_id = welcome["participant"]
            # The lobby event crosses from process B to the practitioner on process A.
            assert (await next_frame(doctor, "waiting"))["participant"] == patient_id
            await doctor.send_str(frame("admit", participant=patient_id))
            assert (await next_frame(patient, "admitted"))["peers"] == [
                {"participant": doctor_id, "role": "practitioner"}
            ]
            await next_frame(doctor, "peer_joined")

            await patient.send_str(frame("offer", to=doctor_id, sdp=SDP))
            assert await next_frame(doctor, "offer") == {"v": 1, "type": "offer", "sdp": SDP, "from": patient_id}
            await doctor.send_str(frame("answer", to=patient_id, sdp=SDP))
            assert (await next_frame(patient, "answer"))["from"] == doctor_id
            for index in range(20):
                await doctor.send_str(frame("ice", to=patient_id, candidate=f"candidate:{index} 1 udp 9 h 9 typ host"))
            for index in range(20):
                assert (await next_frame(patient, "ice"))["candidate"].startswith(f"candidate:{index} ")
            await patient.send_str(frame("chat", text="La escucho bien"))
            assert (await next_frame(doctor, "chat"))["text"] == "La escucho bien"

            # A misbehaving patient client is closed on its process; the practitioner on the other carries on. The
            # patient comes back at once, to the other process: within the grace, so the practitioner hears it
            # resumed, and process B's timer, which runs after that, finds the newer connection and stays silent.
            await patient.send_str("{oops")
            assert await _close_code(patient) == CloseCode.MALFORMED
            back = await http.ws_connect(
                f"ws://127.0.0.1:{port_a}{path}",
                headers={"Cookie": patient_cookie, "Origin": f"http://127.0.0.1:{port_a}"},
            )
            assert (await next_frame(back, "welcome"))["state"] == "connected"
            resumed = json.loads((await doctor.receive(timeout=10)).data)
            assert resumed == {
                "v": 1,
                "type": "peer_joined",
                "participant": patient_id,
                "role": "patient",
                "resumed": True,
            }
            await asyncio.sleep(3)
            await back.send_str(frame("chat", text="Volví"))
            assert json.loads((await doctor.receive(timeout=10)).data)["type"] == "chat"
            # Gone for good this time: process A's timer tells the practitioner after the grace.
            await back.close()
            assert (await next_frame(doctor, "peer_left"))["participant"] == patient_id
            back = await http.ws_connect(
                f"ws://127.0.0.1:{port_b}{path}",
                headers={"Cookie": patient_cookie, "Origin": f"http://127.0.0.1:{port_b}"},
            )
            assert (await next_frame(back, "welcome"))["state"] == "connected"
            assert "resumed" not in await next_frame(doctor, "peer_joined")
            await doctor.send_str(frame("end"))
            assert (await next_frame(back, "end"))["reason"] == "ended"
            assert await _close_code(back) == CloseCode.ENDED
            assert await _close_code(doctor) == CloseCode.ENDED

    run_in_own_loop(lambda: asyncio.wait_for(scenario(), 60))
    encounter = Encounter.objects.get(appointment_ref=str(visit.appointment.public_id))
    visit.appointment.refresh_from_db()
    assert encounter.status == EncounterStatus.FINISHED and visit.appointment.status == AppointmentStatus.COMPLETED
    assert list(ChatMessage.objects.order_by("pk").values_list("body", flat=True)) == ["La escucho bien", "Volví"]


def test_two_aiortc_participants_on_different_processes_decode_each_other(personas, two_daphnes):
    """Real peers through the documented protocol: the practitioner on process A admits the patient on process B
    and offers; the description and the trickled candidates cross Redis; each side decodes the other's video."""
    from bench._aiortc_participant import Participant

    visit = make_visit(personas)
    doctor_cookie = signed_in_cookie(personas.practitioner)
    patient_cookie = signed_in_cookie(personas.patient)
    connections.close_all()
    port_a, port_b = two_daphnes
    path = f"/ws/visit/{visit.appointment.public_id}/"

    async def scenario() -> tuple[int, int, list[str]]:
        async with aiohttp.ClientSession() as http:
            doctor = Participant(http, f"http://127.0.0.1:{port_a}", path, doctor_cookie, admit=True)
            patient = Participant(http, f"http://127.0.0.1:{port_b}", path, patient_cookie)
            try:
                await doctor.join()
                await asyncio.wait_for(doctor.welcomed.wait(), 20)
                await patient.join()
                await asyncio.wait_for(asyncio.gather(doctor.first_frame, patient.first_frame), 40)
                # Not one frame by chance: the picture keeps coming both ways.
                start = (doctor.frames, patient.frames)
                while doctor.frames < start[0] + 10 or patient.frames < start[1] + 10:
                    await asyncio.sleep(0.1)
                return doctor.frames, patient.frames, doctor.errors + patient.errors
            finally:
                await patient.close()
                await doctor.close()

    doctor_frames, patient_frames, errors = run_in_own_loop(lambda: asyncio.wait_for(scenario(), 90))
    assert errors == []
    assert doctor_frames >= 11 and patient_frames >= 11
    encounter = Encounter.objects.get(appointment_ref=str(visit.appointment.public_id))
    # The admit started the encounter; both left, so it ends by itself after the empty-visit timeout.
    assert encounter.status == EncounterStatus.IN_PROGRESS
