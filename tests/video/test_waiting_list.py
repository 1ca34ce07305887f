"""The practitioner's live waiting list (/ws/waiting/): who may listen, and that it follows the waiting room
(someone starts waiting, is admitted, is declined, goes away) without carrying anything personal."""

from __future__ import annotations

import json

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from tests.video.signalling_support import (
    close_code,
    frame,
    make_visit,
    receive,
    receive_until,
    signed_in_cookie,
    socket,
)
from video.protocol import CloseCode

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def _close_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def _in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def _listener(cookie: str | None) -> WebsocketCommunicator:
    return socket("/ws/waiting/", cookie)


async def _waiting_list(listener) -> list[dict]:
    message = json.loads(await listener.receive_from(timeout=5))
    assert message["type"] == "waiting_list" and message["v"] == 1
    return message["visits"]


async def _cookie(user, **kwargs) -> str:
    return await database_sync_to_async(signed_in_cookie)(user, **kwargs)


async def test_the_list_follows_the_waiting_room(personas):
    visit = await database_sync_to_async(make_visit)(personas)
    public_id = str(visit.appointment.public_id)
    listener = _listener(await _cookie(personas.practitioner))
    assert (await listener.connect())[0]
    assert await _waiting_list(listener) == []

    patient = socket(visit.path, await _cookie(personas.patient))
    assert (await patient.connect())[0]
    patient_id = (await receive(patient))["participant"]
    visits = await _waiting_list(listener)
    assert [v["appointment"] for v in visits] == [public_id]
    # Ids and a time only: nothing that names the patient travels on this socket.
    assert set(visits[0]) == {"appointment", "since"}

    doctor = socket(visit.path, await _cookie(personas.practitioner))
    assert (await doctor.connect())[0]
    await receive_until(doctor, "waiting")
    await doctor.send_to(text_data=frame("admit", participant=patient_id))
    await receive_until(patient, "admitted")
    assert await _waiting_list(listener) == []
    await patient.disconnect()
    await doctor.disconnect()
    await listener.disconnect()


async def test_declined_or_gone_leaves_the_list(personas):
    visit = await database_sync_to_async(make_visit)(personas)
    listener = _listener(await _cookie(personas.practitioner))
    assert (await listener.connect())[0]
    assert await _waiting_list(listener) == []
    patient_cookie = await _cookie(personas.patient)

    patient = socket(visit.path, patient_cookie)
    assert (await patient.connect())[0]
    patient_id = (await receive(patient))["participant"]
    assert len(await _waiting_list(listener)) == 1
    doctor = socket(visit.path, await _cookie(personas.practitioner))
    assert (await doctor.connect())[0]
    await receive_until(doctor, "waiting")
    await doctor.send_to(text_data=frame("decline", participant=patient_id))
    assert await _waiting_list(listener) == []
    await patient.disconnect()

    again = socket(visit.path, patient_cookie)
    assert (await again.connect())[0]
    assert len(await _waiting_list(listener)) == 1
    await again.disconnect()  # the phone goes away while waiting
    assert await _waiting_list(listener) == []
    await doctor.disconnect()
    await listener.disconnect()


async def test_another_practitioner_hears_nothing_of_this_visit(personas):
    visit = await database_sync_to_async(make_visit)(personas)
    other = _listener(await _cookie(personas.outsider))
    assert (await other.connect())[0]
    assert await _waiting_list(other) == []
    patient = socket(visit.path, await _cookie(personas.patient))
    assert (await patient.connect())[0]
    await receive(patient)
    assert await other.receive_nothing(timeout=0.5)
    await patient.disconnect()
    await other.disconnect()


@pytest.mark.parametrize("who", ["nobody", "patient", "unverified_practitioner", "coordinator", "admin", "auditor"])
async def test_only_signed_in_practitioners_may_listen(personas, who):
    if who == "nobody":
        cookie = None
    elif who == "unverified_practitioner":
        cookie = await _cookie(personas.practitioner, verified=False)
    else:
        cookie = await _cookie(getattr(personas, who))
    listener = _listener(cookie)
    assert (await listener.connect())[0]
    assert await close_code(listener) == CloseCode.UNAUTHENTICATED


async def test_what_the_browser_sends_is_ignored(personas):
    listener = _listener(await _cookie(personas.practitioner))
    assert (await listener.connect())[0]
    assert await _waiting_list(listener) == []
    await listener.send_to(text_data="not json at all")
    await listener.send_to(text_data=json.dumps({"v": 1, "type": "admit", "participant": 1}))
    assert await listener.receive_nothing(timeout=0.5)
    await listener.disconnect()
