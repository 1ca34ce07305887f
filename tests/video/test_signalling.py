"""The visit's signalling websocket against the real ASGI application: who gets in (and the close code of every
refusal), the waiting room, relaying, and what the visit writes to the encounter, the appointment and the trail."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, connections
from django.utils import timezone

from audit.actions import AuditAction, Outcome
from audit.models import AuditEvent
from records.models import Encounter, EncounterStatus
from scheduling.joinlinks import join_link_revoke
from scheduling.models import AppointmentStatus, ParticipantRole
from tests.video.signalling_support import (
    add_participants,
    another_visit,
    close_code,
    closed_with,
    frame,
    link_cookie,
    make_visit,
    receive,
    receive_until,
    signed_in_cookie,
    socket,
)
from video.models import ChatMessage, Presence, PresenceState, VisitSession, VisitStatus
from video.protocol import MAX_CHAT, MAX_SDP, CloseCode
from video.rooms import waiting_for
from video.services import practitioner_group, visits_announce_departures, visits_finish_abandoned

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest_asyncio.fixture(autouse=True)
async def _close_thread_connections():
    yield
    # The consumer's database calls ran on asgiref's shared thread: its connection must not outlive the test.
    await database_sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def _in_memory_layer(settings):
    # One process here: the in-memory layer. The Redis layer across processes has its own test.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A dropped participant's departure is announced after this grace (short here: tests wait for it).
    settings.VIDEO_RECONNECT_GRACE_SECONDS = 1


@pytest.fixture
def visit(personas):
    return make_visit(personas)


@pytest.fixture
def cookies(personas):
    return {"patient": signed_in_cookie(personas.patient), "practitioner": signed_in_cookie(personas.practitioner)}


def _refusals(reason: str) -> int:
    return AuditEvent.objects.filter(
        action=AuditAction.VISIT_REFUSED, outcome=Outcome.DENIED, details__reason=reason
    ).count()


async def _in_call(visit, cookies):
    """Practitioner and admitted patient connected; returns (practitioner, patient, their participant ids)."""
    doctor = socket(visit.path, cookies["practitioner"])
    assert (await doctor.connect())[0]
    welcome = await receive(doctor)
    assert welcome["type"] == "welcome" and welcome["state"] == "connected" and welcome["peers"] == []
    assert welcome["iceTransportPolicy"] == "all"  # the ICE_TRANSPORT_POLICY setting ("relay": through TURN only)
    patient = socket(visit.path, cookies["patient"])
    assert (await patient.connect())[0]
    greeting = await receive(patient)
    assert greeting["type"] == "welcome" and greeting["state"] == "waiting" and greeting["role"] == "patient"
    assert (await receive(patient))["type"] == "waiting"
    waiting = await receive_until(doctor, "waiting")
    assert waiting["participant"] == greeting["participant"]
    await doctor.send_to(text_data=frame("admit", participant=greeting["participant"]))
    admitted = await receive_until(patient, "admitted")
    assert admitted["peers"] == [{"participant": welcome["participant"], "role": "practitioner"}]
    joined = await receive_until(doctor, "peer_joined")
    assert joined == {"v": 1, "type": "peer_joined", "participant": greeting["participant"], "role": "patient"}
    return doctor, patient, welcome["participant"], greeting["participant"]


# --- Who gets in ---


async def test_without_a_session_the_socket_is_closed_4401(visit):
    assert await closed_with(socket(visit.path)) == CloseCode.UNAUTHENTICATED
    assert await database_sync_to_async(_refusals)("unauthenticated") == 1


async def test_the_outsider_is_refused_4403_and_audited(visit, personas):
    cookie = await database_sync_to_async(signed_in_cookie)(personas.outsider)
    assert await closed_with(socket(visit.path, cookie)) == CloseCode.NOT_PARTICIPANT
    # An unknown visit answers the same: nothing tells the outsider which visits exist.
    assert await closed_with(socket(f"/ws/visit/{uuid.uuid4()}/", cookie)) == CloseCode.NOT_PARTICIPANT
    assert await database_sync_to_async(_refusals)("not_participant") == 2


async def test_staff_without_the_second_factor_are_refused_4401(visit, personas):
    cookie = await database_sync_to_async(signed_in_cookie)(personas.practitioner, verified=False)
    assert await closed_with(socket(visit.path, cookie)) == CloseCode.UNAUTHENTICATED


async def test_a_session_from_before_a_password_change_is_refused_4401(visit, cookies, personas):
    # The session hash check the consumer makes itself now (accounts.signin_state.session_user), as for requests.
    def change_password():
        personas.patient.set_password("a new passphrase for the test")
        personas.patient.save(update_fields=["password"])

    await database_sync_to_async(change_password)()
    assert await closed_with(socket(visit.path, cookies["patient"])) == CloseCode.UNAUTHENTICATED
    assert await database_sync_to_async(_refusals)("unauthenticated") == 1


async def test_a_cancelled_visit_is_unknown_4404(visit, cookies):
    def cancel():
        visit.appointment.status = AppointmentStatus.CANCELLED
        visit.appointment.save(update_fields=["status"])

    await database_sync_to_async(cancel)()
    assert await closed_with(socket(visit.path, cookies["patient"])) == CloseCode.UNKNOWN_VISIT


async def test_outside_the_window_the_socket_is_closed_4408(personas):
    later = await database_sync_to_async(make_visit)(personas, start=timezone.now() + dt.timedelta(hours=3))
    cookie = await database_sync_to_async(signed_in_cookie)(personas.practitioner)
    assert await closed_with(socket(later.path, cookie)) == CloseCode.OUTSIDE_WINDOW


async def test_a_patient_without_consent_is_refused_4412_the_practitioner_is_not(personas):
    unconsented = await database_sync_to_async(make_visit)(personas, consent=False)
    patient = await database_sync_to_async(signed_in_cookie)(personas.patient)
    assert await closed_with(socket(unconsented.path, patient)) == CloseCode.CONSENT_MISSING
    doctor = socket(unconsented.path, await database_sync_to_async(signed_in_cookie)(personas.practitioner))
    assert (await doctor.connect())[0] and (await receive(doctor))["type"] == "welcome"
    await doctor.disconnect()


async def test_a_verified_link_session_gets_in_an_unverified_or_revoked_one_does_not(visit):
    participant = await database_sync_to_async(visit.participant)()
    unverified = await database_sync_to_async(link_cookie)(participant, verified=False)
    assert await closed_with(socket(visit.path, unverified)) == CloseCode.UNAUTHENTICATED
    verified = await database_sync_to_async(link_cookie)(participant)
    patient = socket(visit.path, verified)
    assert (await patient.connect())[0]
    assert (await receive(patient))["state"] == "waiting"
    await patient.disconnect()
    await database_sync_to_async(join_link_revoke)(participant=participant, by=None)
    assert await closed_with(socket(visit.path, verified)) == CloseCode.UNAUTHENTICATED


async def test_a_link_session_does_not_open_another_visit(visit, personas):
    other = await database_sync_to_async(another_visit)(personas)
    participant = await database_sync_to_async(visit.participant)()
    cookie = await database_sync_to_async(link_cookie)(participant)
    assert await closed_with(socket(other.path, cookie)) == CloseCode.NOT_PARTICIPANT


async def test_a_foreign_origin_is_refused_before_the_handshake(visit, cookies, settings):
    settings.ALLOWED_HOSTS = ["localhost"]
    connected, _ = await socket(visit.path, cookies["practitioner"], origin=b"https://evil.example").connect()
    assert not connected


# --- Bad input: the offender is closed with its code, the visit goes on for everyone else ---


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", CloseCode.MALFORMED),
        ('["a list"]', CloseCode.MALFORMED),
        (frame("dance"), CloseCode.MALFORMED),
        ('{"v": 2, "type": "join"}', CloseCode.MALFORMED),
        (frame("offer", to="3", sdp=SDP), CloseCode.MALFORMED),
        (frame("offer", to=3), CloseCode.MALFORMED),
        (frame("chat", text="hola", html="<b>"), CloseCode.MALFORMED),
        (frame("media_state", audio=True, video=False, modality="fax"), CloseCode.MALFORMED),
        (frame("media_state", audio=True, video=False, modality="audio", auto="yes"), CloseCode.MALFORMED),
        (frame("offer", to=3, sdp="x" * (MAX_SDP + 1)), CloseCode.TOO_LARGE),
        (frame("ice", to=3, candidate="c" * 2049), CloseCode.TOO_LARGE),
        (frame("chat", text="a" * (MAX_CHAT + 1)), CloseCode.TOO_LARGE),
        ("x" * 200_000, CloseCode.TOO_LARGE),
    ],
)
async def test_bad_messages_close_the_sender_and_the_visit_goes_on(visit, cookies, text, code):
    doctor, patient, doctor_id, patient_id = await _in_call(visit, cookies)
    await patient.send_to(text_data=text)
    assert await close_code(patient) == code
    assert (await receive_until(doctor, "peer_left"))["participant"] == patient_id
    # The practitioner's connection is untouched, and the patient comes straight back (already admitted).
    await doctor.send_to(text_data=frame("quality", rtt_ms=80, loss=0.01, bitrate_kbps=900))
    again = socket(visit.path, cookies["patient"])
    assert (await again.connect())[0]
    assert (await receive(again))["state"] == "connected"
    assert (await receive_until(doctor, "peer_joined"))["participant"] == patient_id
    await doctor.send_to(text_data=frame("offer", to=patient_id, sdp=SDP))
    assert (await receive_until(again, "offer")) == {"v": 1, "type": "offer", "sdp": SDP, "from": doctor_id}
    await again.disconnect()
    await doctor.disconnect()


async def test_a_flood_is_closed_4429_and_candidates_are_cheaper(visit, cookies):
    doctor, patient, doctor_id, patient_id = await _in_call(visit, cookies)
    # A burst of ICE candidates well past the message burst is fine (an ICE restart trickles many).
    for index in range(300):
        await patient.send_to(text_data=frame("ice", to=doctor_id, candidate=f"candidate:{index} 1 udp 1 a 9 typ host"))
    assert (await receive_until(doctor, "ice"))["from"] == patient_id
    for _ in range(400):
        await patient.send_to(text_data=frame("quality", rtt_ms=50))
    assert await close_code(patient) == CloseCode.RATE_LIMITED
    await doctor.disconnect()


async def test_a_second_tab_replaces_the_first_4409(visit, cookies):
    doctor, patient, doctor_id, patient_id = await _in_call(visit, cookies)
    second = socket(visit.path, cookies["patient"])
    assert (await second.connect())[0]
    assert (await receive(second))["state"] == "connected"  # admitted already: straight back into the call
    assert await close_code(patient) == CloseCode.REPLACED
    # The old tab's goodbye does not take the new one out of the room.
    presence = await database_sync_to_async(Presence.objects.get)(participant_id=patient_id)
    assert presence.state == PresenceState.CONNECTED and presence.connection == 2
    rejoined = AuditEvent.objects.filter(action=AuditAction.VISIT_REJOINED, details__participant=patient_id)
    assert await database_sync_to_async(rejoined.count)() == 1
    await doctor.send_to(text_data=frame("answer", to=patient_id, sdp=SDP))
    assert (await receive_until(second, "answer"))["from"] == doctor_id
    await second.disconnect()
    await doctor.disconnect()


async def test_a_blip_within_the_grace_is_a_resumption_the_others_keep_their_connection(visit, cookies):
    """The patient's websocket drops and comes back within the grace: the practitioner is told it resumed (and
    keeps its media connection), never that the patient left — not even when the grace's timer fires later."""
    doctor, patient, doctor_id, patient_id = await _in_call(visit, cookies)
    await patient.disconnect()
    back = socket(visit.path, cookies["patient"])
    assert (await back.connect())[0]
    assert (await receive(back))["state"] == "connected"
    joined = await receive(doctor)  # the first frame the practitioner hears after the drop
    assert joined == {"v": 1, "type": "peer_joined", "participant": patient_id, "role": "patient", "resumed": True}
    # Past the grace the dropped connection's timer has run; it found the newer connection and said nothing.
    await asyncio.sleep(2)
    await back.send_to(text_data=frame("chat", text="Ya volví"))
    assert (await receive(doctor))["type"] == "chat"
    await doctor.send_to(text_data=frame("offer", to=patient_id, sdp=SDP))
    assert (await receive_until(back, "offer"))["from"] == doctor_id

    def trail():
        events = AuditEvent.objects.filter(details__participant=patient_id, action__startswith="video.visit.")
        return list(events.order_by("pk").values_list("action", "details"))

    # The drop and the return are in the trail as before: a leave (not explicit), then a rejoin.
    actions = await database_sync_to_async(trail)()
    assert [action for action, _details in actions][-2:] == [AuditAction.VISIT_LEFT, AuditAction.VISIT_REJOINED]
    assert actions[-2][1]["explicit"] is False and actions[-1][1]["resumed"] is True
    await back.disconnect()
    await doctor.disconnect()


async def test_a_drop_without_return_is_announced_once_the_grace_is_over(visit, cookies):
    doctor, patient, _doctor_id, patient_id = await _in_call(visit, cookies)
    await patient.disconnect()
    presence = await database_sync_to_async(Presence.objects.get)(participant_id=patient_id)
    assert presence.state == PresenceState.ADMITTED and presence.away_since is not None
    left = await receive(doctor)  # after the grace, and nothing before it
    assert left == {"v": 1, "type": "peer_left", "participant": patient_id}
    presence = await database_sync_to_async(Presence.objects.get)(participant_id=patient_id)
    assert presence.away_since is None
    # Back after the announcement: a plain join for the others (they start a fresh connection).
    again = socket(visit.path, cookies["patient"])
    assert (await again.connect())[0]
    assert await receive_until(doctor, "peer_joined") == {
        "v": 1,
        "type": "peer_joined",
        "participant": patient_id,
        "role": "patient",
    }
    await again.disconnect()
    await doctor.disconnect()


async def test_a_leave_on_purpose_is_announced_at_once(visit, cookies, settings):
    settings.VIDEO_RECONNECT_GRACE_SECONDS = 60
    doctor, patient, _doctor_id, patient_id = await _in_call(visit, cookies)
    await patient.send_to(text_data=frame("leave"))
    assert (await receive(doctor)) == {"v": 1, "type": "peer_left", "participant": patient_id}
    await doctor.disconnect()


async def test_the_sweep_announces_a_departure_whose_process_died(visit, cookies, settings):
    """The process that saw the drop died before its timer: the periodic sweep tells the others."""
    settings.VIDEO_RECONNECT_GRACE_SECONDS = 60
    doctor, patient, _doctor_id, patient_id = await _in_call(visit, cookies)
    await patient.disconnect()

    def age_and_sweep():
        from scheduling.signals import periodic_upkeep

        assert visits_announce_departures() == []  # still within the grace
        Presence.objects.filter(participant_id=patient_id).update(away_since=timezone.now() - dt.timedelta(hours=1))
        periodic_upkeep.send(sender=None)

    await database_sync_to_async(age_and_sweep)()
    assert (await receive(doctor)) == {"v": 1, "type": "peer_left", "participant": patient_id}
    await doctor.disconnect()


async def test_offers_are_relayed_only_to_participants_of_the_same_visit(visit, cookies, personas):
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    other = await database_sync_to_async(another_visit)(personas)
    other_patient_id = await database_sync_to_async(lambda: other.participant().pk)()
    await doctor.send_to(text_data=frame("offer", to=other_patient_id, sdp=SDP))
    error = await receive_until(doctor, "error")
    assert error == {"v": 1, "type": "error", "code": "unknown_participant", "about": "offer"}
    await doctor.disconnect()
    await patient.disconnect()


async def test_an_offer_right_behind_the_admit_reaches_the_admitted_patient(visit, cookies):
    # A host may prepare its offer while the patient waits and send it with the admit, before any room event
    # came back: it is relayed after the admit committed, so the patient hears "admitted" first, then the offer.
    doctor = socket(visit.path, cookies["practitioner"])
    assert (await doctor.connect())[0]
    doctor_id = (await receive(doctor))["participant"]
    patient = socket(visit.path, cookies["patient"])
    assert (await patient.connect())[0]
    patient_id = (await receive(patient))["participant"]
    await receive_until(doctor, "waiting")
    await doctor.send_to(text_data=frame("admit", participant=patient_id))
    await doctor.send_to(text_data=frame("offer", to=patient_id, sdp=SDP))
    assert (await receive_until(patient, "admitted"))["peers"] == [{"participant": doctor_id, "role": "practitioner"}]
    assert await receive_until(patient, "offer") == {"v": 1, "type": "offer", "sdp": SDP, "from": doctor_id}
    assert (await receive_until(doctor, "peer_joined"))["participant"] == patient_id
    await doctor.disconnect()
    await patient.disconnect()


async def test_a_waiting_patient_can_only_wait(visit, cookies):
    patient = socket(visit.path, cookies["patient"])
    assert (await patient.connect())[0]
    await receive_until(patient, "waiting")
    await patient.send_to(text_data=frame("chat", text="¿Me escucha?"))
    assert (await receive_until(patient, "error"))["code"] == "waiting"
    await patient.send_to(text_data=frame("end"))
    assert (await receive_until(patient, "error"))["code"] == "waiting"
    await patient.disconnect()
    assert await database_sync_to_async(ChatMessage.objects.count)() == 0


# --- The waiting room, the encounter and the trail ---


async def test_admit_starts_the_encounter_and_end_finishes_it(visit, cookies, personas):
    doctor, patient, doctor_id, patient_id = await _in_call(visit, cookies)

    def started():
        session = VisitSession.objects.select_related("encounter").get(appointment=visit.appointment)
        visit.appointment.refresh_from_db()
        return session, visit.appointment.status

    session, status = await database_sync_to_async(started)()
    assert session.status == VisitStatus.IN_PROGRESS and status == AppointmentStatus.IN_PROGRESS
    encounter = session.encounter
    assert encounter.appointment_ref == str(visit.appointment.public_id)
    assert encounter.status == EncounterStatus.IN_PROGRESS
    users = await database_sync_to_async(lambda: list(encounter.participants.values_list("user_id", "role")))()
    assert users == [(personas.practitioner.pk, "attending")]

    # Negotiation both ways, addressed and stamped with the sender.
    await patient.send_to(text_data=frame("offer", to=doctor_id, sdp=SDP))
    assert await receive_until(doctor, "offer") == {"v": 1, "type": "offer", "sdp": SDP, "from": patient_id}
    await doctor.send_to(text_data=frame("ice", to=patient_id, candidate="", sdpMid="0", sdpMLineIndex=0))
    ice = await receive_until(patient, "ice")
    assert ice == {"v": 1, "type": "ice", "candidate": "", "sdpMid": "0", "sdpMLineIndex": 0, "from": doctor_id}

    # The link got poor: audio only, recorded in the encounter; the other side hears of it.
    await patient.send_to(text_data=frame("media_state", audio=True, video=False, modality="audio", auto=True))
    state = await receive_until(doctor, "media_state")
    assert state["from"] == patient_id and state["modality"] == "audio" and state["auto"] is True
    modalities = await database_sync_to_async(
        lambda: list(encounter.modality_changes.order_by("changed_at", "pk").values_list("modality", flat=True))
    )()
    assert modalities == ["video", "audio"]
    automatic = await database_sync_to_async(
        lambda: AuditEvent.objects.get(action=AuditAction.VISIT_MODALITY_CHANGED).details["automatic"]
    )()
    assert automatic is True  # the client stepped down by itself, not a person's choice

    # Chat: relayed to both, stored encrypted with the encounter, audited without its text.
    await patient.send_to(text_data=frame("chat", text="Se cortó el video, doctora"))
    for side in (doctor, patient):
        chat = await receive_until(side, "chat")
        assert chat["text"] == "Se cortó el video, doctora" and chat["from"] == patient_id

    def stored():
        message = ChatMessage.objects.get()
        with connection.cursor() as cursor:
            cursor.execute("SELECT body FROM video_chatmessage WHERE id = %s", [message.pk])
            raw = bytes(cursor.fetchone()[0])
        audit_texts = [str(e.details) for e in AuditEvent.objects.filter(action=AuditAction.VISIT_CHAT_SENT)]
        return message, raw, audit_texts

    message, raw, audit_texts = await database_sync_to_async(stored)()
    assert message.body == "Se cortó el video, doctora" and message.encounter_id == encounter.pk
    assert b"video" not in raw and len(audit_texts) == 1 and "cortó" not in audit_texts[0]

    # The patient may not end the visit; the practitioner does, for everyone.
    await patient.send_to(text_data=frame("end"))
    assert (await receive_until(patient, "error"))["code"] == "forbidden"
    await doctor.send_to(text_data=frame("end"))
    for side in (doctor, patient):
        assert (await receive_until(side, "end"))["reason"] == "ended"
        assert await close_code(side) == CloseCode.ENDED

    def finished():
        encounter.refresh_from_db()
        visit.appointment.refresh_from_db()
        return encounter, visit.appointment.status

    encounter, status = await database_sync_to_async(finished)()
    assert encounter.status == EncounterStatus.FINISHED and encounter.modality_used == "audio"
    assert encounter.ended_at >= encounter.started_at and status == AppointmentStatus.COMPLETED
    # Coming back to an ended visit.
    assert await closed_with(socket(visit.path, cookies["patient"])) == CloseCode.ENDED

    def trail():
        return set(AuditEvent.objects.filter(action__startswith="video.").values_list("action", flat=True)) | set(
            AuditEvent.objects.filter(action__startswith="scheduling.appointment.visit").values_list(
                "action", flat=True
            )
        )

    assert await database_sync_to_async(trail)() >= {
        AuditAction.VISIT_JOINED,
        AuditAction.VISIT_ADMITTED,
        AuditAction.VISIT_MODALITY_CHANGED,
        AuditAction.VISIT_CHAT_SENT,
        AuditAction.VISIT_ENDED,
        AuditAction.VISIT_REFUSED,
        AuditAction.APPOINTMENT_VISIT_STARTED,
        AuditAction.APPOINTMENT_VISIT_FINISHED,
    }


async def test_decline_closes_the_waiting_patient_4431(visit, cookies):
    doctor = socket(visit.path, cookies["practitioner"])
    assert (await doctor.connect())[0]
    await receive(doctor)
    patient = socket(visit.path, cookies["patient"])
    assert (await patient.connect())[0]
    patient_id = (await receive(patient))["participant"]
    await receive_until(doctor, "waiting")
    await doctor.send_to(text_data=frame("decline", participant=patient_id))
    assert (await receive_until(patient, "declined"))["type"] == "declined"
    assert await close_code(patient) == CloseCode.DECLINED
    assert await database_sync_to_async(
        AuditEvent.objects.filter(action=AuditAction.VISIT_DECLINED, details__participant=patient_id).exists
    )()
    await doctor.disconnect()


async def test_the_day_list_selector_shows_who_waits(visit, cookies, personas):
    patient = socket(visit.path, cookies["patient"])
    assert (await patient.connect())[0]
    await receive_until(patient, "waiting")
    waiting = await database_sync_to_async(lambda: list(waiting_for(personas.practitioner)))()
    assert [(w.visit.appointment_id, w.state) for w in waiting] == [(visit.appointment.pk, "waiting")]
    assert await database_sync_to_async(lambda: list(waiting_for(personas.outsider)))() == []
    await patient.disconnect()
    assert await database_sync_to_async(lambda: list(waiting_for(personas.practitioner)))() == []


async def test_a_consulted_specialist_joins_the_running_visit_and_a_fifth_is_refused(visit, cookies, personas):
    extra = await database_sync_to_async(add_participants)(visit, personas)
    doctor, patient, doctor_id, patient_id = await _in_call(visit, cookies)
    specialist = socket(visit.path, extra["consulted"])
    assert (await specialist.connect())[0]
    welcome = await receive(specialist)
    assert welcome["state"] == "connected" and {p["participant"] for p in welcome["peers"]} == {doctor_id, patient_id}
    assert (await receive_until(doctor, "peer_joined"))["role"] == "consulted"
    interpreter = socket(visit.path, extra["interpreter"])
    assert (await interpreter.connect())[0]
    first = await interpreter.receive_output(timeout=5)
    assert first["type"] == "websocket.send", first
    assert json.loads(first["text"])["state"] == "connected"
    fifth = socket(visit.path, extra["fifth"])
    assert await closed_with(fifth) == CloseCode.ROOM_FULL

    encounter = await database_sync_to_async(
        lambda: Encounter.objects.get(appointment_ref=str(visit.appointment.public_id))
    )()
    roles = await database_sync_to_async(lambda: sorted(encounter.participants.values_list("role", flat=True)))()
    assert roles == ["attending", "consultant"]
    for side in (doctor, patient, specialist, interpreter):
        await side.disconnect()


async def test_the_last_one_leaving_ends_the_visit_after_the_timeout(visit, cookies):
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    await patient.send_to(text_data=frame("leave"))
    assert await close_code(patient) == 1000
    await doctor.disconnect()
    session = await database_sync_to_async(VisitSession.objects.get)(appointment=visit.appointment)
    assert session.status == VisitStatus.IN_PROGRESS and session.empty_since is not None
    # Not yet: the practitioner may come back within the timeout.
    assert await database_sync_to_async(visits_finish_abandoned)() == 0
    later = timezone.now() + dt.timedelta(minutes=10)
    assert await database_sync_to_async(visits_finish_abandoned)(now=later) == 1

    def finished():
        session.refresh_from_db()
        encounter = session.encounter
        encounter.refresh_from_db()
        visit.appointment.refresh_from_db()
        return session, encounter, visit.appointment.status

    session, encounter, status = await database_sync_to_async(finished)()
    assert session.status == VisitStatus.ENDED and status == AppointmentStatus.COMPLETED
    # The real time: when the last one left, not when the sweep noticed.
    assert encounter.ended_at == session.empty_since and encounter.status == EncounterStatus.FINISHED


async def test_the_scheduling_sweep_ends_an_abandoned_visit(visit, cookies):
    """When no process was left to run the timer, the worker's once-a-minute sweep ends the visit."""
    import io

    from django.core.management import call_command

    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    await patient.send_to(text_data=frame("leave"))
    assert await close_code(patient) == 1000
    await doctor.disconnect()

    def age_and_sweep():
        VisitSession.objects.filter(appointment=visit.appointment).update(
            empty_since=timezone.now() - dt.timedelta(minutes=10)
        )
        call_command("scheduling_sweep", stdout=io.StringIO())
        return VisitSession.objects.get(appointment=visit.appointment).status

    assert await database_sync_to_async(age_and_sweep)() == VisitStatus.ENDED


async def test_join_and_leave_are_audited_with_ids_only(visit, cookies):
    doctor = socket(visit.path, cookies["practitioner"])
    assert (await doctor.connect())[0]
    participant_id = (await receive(doctor))["participant"]
    await doctor.disconnect()

    def events():
        return list(
            AuditEvent.objects.filter(action__in=[AuditAction.VISIT_JOINED, AuditAction.VISIT_LEFT])
            .order_by("pk")
            .values_list("action", "details", "object_id")
        )

    joined, left = await database_sync_to_async(events)()
    assert joined[0] == AuditAction.VISIT_JOINED and joined[1]["participant"] == participant_id
    assert left[0] == AuditAction.VISIT_LEFT and left[1] == {
        "participant": participant_id,
        "explicit": False,
        "connection": 1,
    }
    assert joined[2] == str(visit.appointment.pk) and joined[1]["role"] == ParticipantRole.PRACTITIONER


async def test_the_consumer_ends_an_emptied_visit_by_itself(visit, cookies, settings):
    settings.VIDEO_EMPTY_VISIT_TIMEOUT_SECONDS = 0
    doctor, patient, _doctor_id, _patient_id = await _in_call(visit, cookies)
    await patient.disconnect()
    await doctor.disconnect()
    # The timer fires a second after the timeout, in the process that saw the last one leave.
    for _ in range(50):
        await asyncio.sleep(0.1)
        session = await database_sync_to_async(VisitSession.objects.get)(appointment=visit.appointment)
        if session.status == VisitStatus.ENDED:
            break
    assert session.status == VisitStatus.ENDED and session.ended_at == session.empty_since


async def test_the_practitioners_pages_hear_who_starts_waiting(visit, cookies, personas):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(practitioner_group(personas.practitioner.pk), channel)
    patient = socket(visit.path, cookies["patient"])
    assert (await patient.connect())[0]
    patient_id = (await receive(patient))["participant"]
    heard = await asyncio.wait_for(layer.receive(channel), 5)
    public_id = str(visit.appointment.public_id)
    assert heard == {"type": "visit.waiting", "appointment": public_id, "participant": patient_id}
    await patient.disconnect()


async def test_a_practitioner_arriving_later_is_told_who_waits(visit, cookies):
    patient = socket(visit.path, cookies["patient"])
    assert (await patient.connect())[0]
    patient_id = (await receive(patient))["participant"]
    assert await receive(patient) == {"v": 1, "type": "waiting"}
    doctor = socket(visit.path, cookies["practitioner"])
    assert (await doctor.connect())[0]
    assert (await receive(doctor))["type"] == "welcome"
    assert await receive(doctor) == {"v": 1, "type": "waiting", "participant": patient_id, "role": "patient"}
    # The waiting patient hears nothing of the practitioner's arrival (the lobby is not the call).
    assert await patient.receive_nothing(timeout=0.3)
    await patient.disconnect()
    await doctor.disconnect()


async def test_an_admit_the_record_refuses_leaves_everyone_connected(visit, cookies, personas):
    # A practitioner without a professional registry cannot take part in an encounter (EHR-1).
    await database_sync_to_async(lambda: personas.practitioner.practitioner_profile.delete())()
    doctor = socket(visit.path, cookies["practitioner"])
    assert (await doctor.connect())[0]
    await receive(doctor)
    patient = socket(visit.path, cookies["patient"])
    assert (await patient.connect())[0]
    patient_id = (await receive(patient))["participant"]
    assert (await receive(patient))["type"] == "waiting"
    await receive_until(doctor, "waiting")
    await doctor.send_to(text_data=frame("admit", participant=patient_id))
    error = await receive_until(doctor, "error")
    assert error == {"v": 1, "type": "error", "code": "refused", "about": "admit", "reason": "no_registry"}
    session = await database_sync_to_async(VisitSession.objects.get)(appointment=visit.appointment)
    assert session.status == VisitStatus.WAITING and session.encounter_id is None
    # Both still connected: the patient still waits.
    await doctor.send_to(text_data=frame("join"))
    assert await patient.receive_nothing(timeout=0.3)
    await patient.disconnect()
    await doctor.disconnect()
