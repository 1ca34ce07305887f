"""A daphne process killed outright (SIGKILL, out of memory, its machine lost) never runs its consumers' disconnect:
the periodic sweep finds its connections by the process's silent liveness beat and drops them as any drop, while
the connections of live processes stay as they are."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
from typing import Any

import aiohttp
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connections
from django.utils import timezone

from audit.actions import AuditAction
from audit.models import AuditEvent
from teleconsult.channel_layer import process_of
from tests.teleconsult.support import run_in_own_loop
from tests.video.daphne_processes import next_frame, running_daphnes
from tests.video.signalling_support import frame, make_visit, signed_in_cookie
from video.apps import _drop_lost_connections
from video.models import Presence, PresenceState
from video.services import visit_group, visits_announce_departures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

# Processes that beat every second; the test process (the sweep) sets how long a silent one is taken for alive.
DAPHNE_ENV = {"VIDEO_RECONNECT_GRACE_SECONDS": "2", "CHANNEL_LAYER_HEARTBEAT_SECONDS": "1"}


def _beats() -> dict[str, float]:
    return dict(async_to_sync(get_channel_layer().processes_seen)())


def _group_members(group: str) -> set[str]:
    layer = get_channel_layer()

    async def members() -> set[str]:
        names = await layer.connection(layer.consistent_hash(group)).zrange(layer._group_key(group), 0, -1)
        return {name.decode() for name in names}

    return async_to_sync(members)()


async def _in_call(http: aiohttp.ClientSession, visit: Any, cookies: tuple[str, str], ports: tuple[int, int]) -> Any:
    """The practitioner on the first process, the patient on the second, admitted: both in the call."""
    path = f"/ws/visit/{visit.appointment.public_id}/"
    sockets = []
    for cookie, port in zip(cookies, ports, strict=True):
        sockets.append(
            await http.ws_connect(
                f"ws://127.0.0.1:{port}{path}", headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
            )
        )
        await next_frame(sockets[-1], "welcome", timeout=20)
    doctor, patient = sockets
    patient_id = (await next_frame(doctor, "waiting", timeout=20))["participant"]
    await doctor.send_str(frame("admit", participant=patient_id))
    await next_frame(patient, "admitted", timeout=20)
    await next_frame(doctor, "peer_joined", timeout=20)
    return doctor, patient, patient_id


def _sweep_thread(fn: Any) -> Any:
    """A sync step (database and Redis) from the scenario's loop, in a thread whose connection is closed after."""

    def run() -> Any:
        try:
            return fn()
        finally:
            connections.close_all()

    return asyncio.to_thread(run)


def _sweep_once_dead(*, alive: str, dead: str) -> None:
    """The periodic sweep's drop and announcement, once process `alive` has beaten more than the margin (2 s) after
    `dead`'s last beat. It runs "at" the live process's last beat, so that one counts as alive however busy this
    machine is, and the other as dead; the announcement as it would once the grace is over."""
    deadline = time.monotonic() + 60
    while True:
        beats = _beats()
        if beats[alive] - beats[dead] > 2.5:
            break
        assert time.monotonic() < deadline, "the live process stopped beating"
        time.sleep(0.2)
    now = dt.datetime.fromtimestamp(beats[alive], tz=dt.UTC)
    _drop_lost_connections(now=now)
    layer = get_channel_layer()
    for push in visits_announce_departures(now=now + dt.timedelta(seconds=10)):
        async_to_sync(layer.group_send)(push.group, push.message)


def test_connections_of_a_killed_process_are_dropped(personas, settings, redis_url):
    settings.VIDEO_RECONNECT_GRACE_SECONDS = 2
    settings.CHANNEL_LAYER_PROCESS_LOST_SECONDS = 2
    visit = make_visit(personas)
    cookies = (signed_in_cookie(personas.practitioner), signed_in_cookie(personas.patient))
    connections.close_all()
    with running_daphnes(2, redis_url=redis_url, extra_env=DAPHNE_ENV) as [(port_a, _a), (port_b, process_b)]:

        async def scenario() -> None:
            async with aiohttp.ClientSession() as http:
                doctor, _patient, patient_id = await _in_call(http, visit, cookies, (port_a, port_b))
                before = await _sweep_thread(
                    lambda: {p.participant_id: p for p in Presence.objects.filter(visit__appointment=visit.appointment)}
                )
                patient_presence = before.pop(patient_id)
                (doctor_presence,) = before.values()
                process_a = process_of(doctor_presence.channel_name)
                process_b_name = process_of(patient_presence.channel_name)

                os.killpg(process_b.pid, signal.SIGKILL)
                process_b.wait(10)

                await _sweep_thread(lambda: _sweep_once_dead(alive=process_a, dead=process_b_name))
                assert (await next_frame(doctor, "peer_left", timeout=20))["participant"] == patient_id

                def check() -> None:
                    patient = Presence.objects.get(pk=patient_presence.pk)
                    # Dropped from a visit in progress: may come back without waiting; the others were told.
                    assert (patient.state, patient.channel_name, patient.away_since) == (
                        PresenceState.ADMITTED,
                        "",
                        None,
                    )
                    doctor_now = Presence.objects.get(pk=doctor_presence.pk)
                    assert (doctor_now.state, doctor_now.channel_name, doctor_now.connection) == (
                        PresenceState.CONNECTED,
                        doctor_presence.channel_name,
                        doctor_presence.connection,
                    )
                    left = AuditEvent.objects.get(action=AuditAction.VISIT_LEFT, details__participant=patient_id)
                    assert left.details["process_lost"] is True and left.details["explicit"] is False
                    assert left.actor_role == "system"
                    members = _group_members(visit_group(patient.visit_id))
                    assert patient_presence.channel_name not in members
                    assert doctor_presence.channel_name in members

                await _sweep_thread(check)
                await doctor.close()

        run_in_own_loop(scenario)


def test_a_patient_waiting_on_a_killed_process_leaves_the_waiting_list(personas, settings, redis_url):
    settings.CHANNEL_LAYER_PROCESS_LOST_SECONDS = 2
    visit = make_visit(personas)
    doctor_cookie, patient_cookie = signed_in_cookie(personas.practitioner), signed_in_cookie(personas.patient)
    connections.close_all()
    path = f"/ws/visit/{visit.appointment.public_id}/"
    with running_daphnes(2, redis_url=redis_url, extra_env=DAPHNE_ENV) as [(port_a, _a), (port_b, process_b)]:

        def connect(http: aiohttp.ClientSession, path: str, cookie: str, port: int) -> Any:
            return http.ws_connect(
                f"ws://127.0.0.1:{port}{path}", headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}
            )

        async def scenario() -> None:
            async with aiohttp.ClientSession() as http:
                waiting_list = await connect(http, "/ws/waiting/", doctor_cookie, port_a)
                assert (await next_frame(waiting_list, "waiting_list", timeout=20))["visits"] == []
                doctor = await connect(http, path, doctor_cookie, port_a)
                await next_frame(doctor, "welcome", timeout=20)
                patient = await connect(http, path, patient_cookie, port_b)
                patient_id = (await next_frame(patient, "welcome", timeout=20))["participant"]
                assert (await next_frame(doctor, "waiting", timeout=20))["participant"] == patient_id
                assert len((await next_frame(waiting_list, "waiting_list", timeout=20))["visits"]) == 1

                channels = await _sweep_thread(
                    lambda: dict(
                        Presence.objects.filter(visit__appointment=visit.appointment).values_list(
                            "participant_id", "channel_name"
                        )
                    )
                )
                alive = process_of(next(channel for pid, channel in channels.items() if pid != patient_id))
                os.killpg(process_b.pid, signal.SIGKILL)
                process_b.wait(10)
                await _sweep_thread(lambda: _sweep_once_dead(alive=alive, dead=process_of(channels[patient_id])))

                assert (await next_frame(doctor, "peer_left", timeout=20))["participant"] == patient_id
                assert (await next_frame(waiting_list, "waiting_list", timeout=20))["visits"] == []
                state = await _sweep_thread(
                    lambda: Presence.objects.get(visit__appointment=visit.appointment, participant_id=patient_id).state
                )
                assert state == PresenceState.LEFT
                await doctor.close()
                await waiting_list.close()

        run_in_own_loop(scenario)


def test_connections_of_live_processes_are_left_alone(personas, settings, redis_url):
    """The pair of the test above: with both processes beating, the sweep (at the default margin) changes nothing."""
    visit = make_visit(personas)
    cookies = (signed_in_cookie(personas.practitioner), signed_in_cookie(personas.patient))
    connections.close_all()
    with running_daphnes(2, redis_url=redis_url, extra_env=DAPHNE_ENV) as [(port_a, _a), (port_b, _b)]:

        async def scenario() -> None:
            async with aiohttp.ClientSession() as http:
                doctor, patient, _patient = await _in_call(http, visit, cookies, (port_a, port_b))

                def sweep() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
                    fields = ("participant_id", "state", "channel_name", "connection", "away_since")
                    rows = Presence.objects.filter(visit__appointment=visit.appointment).order_by("pk")
                    before = list(rows.values_list(*fields))
                    assert {process_of(row[2]) for row in before} <= _beats().keys()
                    _drop_lost_connections(now=timezone.now())
                    return before, list(rows.values_list(*fields))

                before, after = await _sweep_thread(sweep)
                assert after == before
                left = await _sweep_thread(lambda: AuditEvent.objects.filter(action=AuditAction.VISIT_LEFT).count())
                assert left == 0
                # Still talking to each other across the processes.
                await patient.send_str(frame("chat", text="¿Me escucha?"))
                assert (await next_frame(doctor, "chat", timeout=20))["text"] == "¿Me escucha?"
                await doctor.close()
                await patient.close()

        run_in_own_loop(scenario)
