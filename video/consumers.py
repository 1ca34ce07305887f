"""The visit's signalling websocket (VID-1): /ws/visit/<appointment public id>/, protocol in video/protocol.py.

Thin: parse → gate → service → push. Authentication comes only from the session (a signed-in participant,
staff with their second factor, or a verified join-link session), never from the URL. Room state lives in
the database (video.models) and messages travel on the channel layer, so any daphne process serves any
participant of any visit. Negotiation messages go straight to the addressed participant's channel (no
group fan-out); room events (joins, leaves, chat, media state) go to the visit's group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ValidationError

from accounts.signin_state import session_user
from scheduling.models import AppointmentParticipant, ParticipantRole
from video import services
from video.protocol import (
    CLOSE_REASONS,
    RECORDING_TYPES,
    CloseCode,
    ProtocolError,
    TokenBucket,
    cost_of,
    encode,
    parse,
)
from video.recording_consumer import RecordingMixin, recording_on_connect
from video.services import ActionError, Push, Refused
from video.turn import ice_servers_for

logger = logging.getLogger(__name__)

# Fields of layer events that are for the consumers only, never sent to a browser.
_INTERNAL = ("channel",)
_NEGOTIATION = ("offer", "answer", "ice")


def _ice_servers(participant: AppointmentParticipant) -> list[dict[str, object]]:
    return list(ice_servers_for(participant))


def _admit_and_join(
    public_id: str, session: Any, channel_name: str
) -> tuple[services.Joined, AppointmentParticipant, Any, list[dict[str, object]], Any]:
    # The session's user is looked up here, in the connection's one database call before its welcome, rather than
    # by channels' AuthMiddleware in a thread hop of its own before the handshake is accepted: when many visits
    # join at once those hops queue on the process's single sync thread, and a handshake still waiting after 5 s
    # is dropped by daphne (docs/decisions.md).
    user = session_user(session)
    participant = None
    try:
        participant, signed_in = services.visit_participant_for(public_id=public_id, user=user, session=session)
        joined = services.visit_connect(participant=participant, user=signed_in, channel_name=channel_name)
    except Refused as refusal:
        services.visit_refusal_record(public_id=public_id, code=refusal.code, participant=participant, user=user)
        raise
    # The recording side of the connection in the same call (one hop to the sync thread per connection, not two):
    # a recording this participant did not consent to stops, one they did is shown to them. If it fails here,
    # the consumer asks again in a call of its own, where a failure ends the connection as any other would.
    try:
        recording = recording_on_connect(
            visit_id=joined.visit_id, participant_id=joined.participant_id, connected=joined.state == "connected"
        )
    except Exception:
        logger.exception("the recording check of a connection failed; asking again")
        recording = None
    return joined, participant, signed_in, _ice_servers(participant), recording


class VisitConsumer(RecordingMixin, AsyncWebsocketConsumer):
    joined: services.Joined | None = None
    group: str | None = None
    # The browser's side of the socket is closed (its websocket.disconnect may still be on its way).
    socket_closed = False
    # Pushes still being sent from a task (_push_soon), which the connection's next push waits for.
    _deferred: asyncio.Task[None] | None = None
    # A recording event reached this participant in the waiting room (where it is not shown).
    recording_unheard = False

    async def connect(self) -> None:
        self.joined = None
        self.closing = False
        self.bucket = TokenBucket()
        self._background = set()
        # participant id → {"channel", "role", "state"} of the others in the visit, kept current by room events.
        self.peers: dict[int, dict[str, Any]] = {}
        public_id = str(self.scope["url_route"]["kwargs"]["public_id"])
        # Accepted first, then closed when refused: a close before the handshake completes reaches the
        # browser as a bare HTTP 403 without our code and reason.
        await self.accept()
        try:
            joined, participant, user, ice, recording = await database_sync_to_async(_admit_and_join)(
                public_id, self.scope.get("session"), self.channel_name
            )
        except Refused as refusal:
            await self._close(refusal.code)
            return
        self.joined, self.participant, self.user, self.public_id = joined, participant, user, public_id
        self.group = services.visit_group(joined.visit_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        for peer in joined.peers + joined.waiting:
            self.peers[peer["participant"]] = peer
        await self._send_frame(
            "welcome",
            participant=joined.participant_id,
            role=joined.role,
            state=joined.state,
            visit=public_id,
            peers=[self._public(peer) for peer in joined.peers],
            iceServers=ice,
            iceTransportPolicy=settings.ICE_TRANSPORT_POLICY,
        )
        if joined.state == "waiting":
            await self._send_frame("waiting")
        elif self._is_host():
            for peer in joined.waiting:
                await self._send_frame("waiting", participant=peer["participant"], role=peer["role"])
        await self._push(joined.pushes)
        await self._recording_on_connect(recording)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # channels' AsyncConsumer.__call__ (channels 4.3) with a leaner loop over the two sources, the browser
        # and the channel layer. channels' await_many_dispatch calls asyncio.wait on both sources for every
        # message (a waiter and callbacks added to and removed from both tasks each time): about a fifth of
        # daphne's CPU per relayed message in bench.signalling_relay. Here each source's task reports itself
        # done to one queue. Same behaviour: one message dispatched at a time, a finished source restarted
        # after its message was handled, a handler's error or StopConsumer ends the loop, both tasks cancelled.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        sources: list[Any] = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        ready: asyncio.Queue[tuple[int, asyncio.Future[Any]]] = asyncio.Queue()

        def start(index: int) -> asyncio.Future[Any]:
            task = asyncio.ensure_future(sources[index]())
            task.add_done_callback(lambda done: ready.put_nowait((index, done)))
            return task

        tasks = [start(index) for index in range(len(sources))]
        try:
            while True:
                index, done = await ready.get()
                await self.dispatch(done.result())
                tasks[index] = start(index)
        except StopConsumer:
            pass
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch first runs close_old_connections in the sync thread for every message, a thread
        # round trip each (two per relayed message: the sender's frame and the peer's layer event). This
        # consumer touches the database only through database_sync_to_async, which closes old connections
        # itself before and after each call, so the extra hop does nothing here but cost time on the hot path.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # channels' handler (this consumer keeps no `groups` for it to discard) without its close_old_connections
        # hop after disconnect(), for the reason given in dispatch. When a stopping daphne closes every websocket at
        # once (teleconsult/daphne_server.py) that hop queued behind all the departures on the sync thread, so no
        # consumer ended before the last departure was written.
        await self.disconnect(message["code"])
        raise StopConsumer()

    @staticmethod
    def _public(peer: dict[str, Any]) -> dict[str, Any]:
        return {"participant": peer["participant"], "role": peer["role"]}

    def _is_host(self) -> bool:
        return self.joined is not None and self.joined.role in (ParticipantRole.PRACTITIONER, ParticipantRole.CONSULTED)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        # A browser that closes its websocket (a page closed, a drop it noticed first) makes daphne's protocol refuse
        # every frame from then on, yet the websocket.disconnect comes only once the TCP connection is gone, which
        # can take a while if data for the browser is still queued. Messages for this participant keep arriving on
        # the layer meanwhile (a relayed candidate, a room event); daphne raises on the send, and an exception here
        # would end the consumer before its disconnect() ran (the departure never handled, the others never told).
        # What was addressed to a closed socket is dropped instead, quietly.
        if self.socket_closed:
            return
        try:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        except Disconnected:
            self.socket_closed = True

    async def _send_frame(self, kind: str, **fields: Any) -> None:
        await self.send(text_data=encode(kind, **fields))

    async def _error(self, code: str, **fields: Any) -> None:
        await self._send_frame("error", code=code, **fields)

    async def _close(self, code: CloseCode) -> None:
        self.closing = True
        await self.close(code=int(code), reason=CLOSE_REASONS[code])

    async def _push(self, pushes: list[Push]) -> None:
        # Pushes deferred by an earlier message go out first: what this connection tells others keeps its order.
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            await deferred
        await _send_pushes(self.channel_layer, pushes)

    def _push_soon(self, pushes: list[Push]) -> None:
        """Send these from a task, so the connection's next message (a relayed offer) need not wait for them; any
        later push of this connection waits for them (_push). Relayed negotiation does not: it goes to one
        participant and is ordered only against what that participant was sent directly."""
        if not pushes:
            return
        previous = self._deferred

        async def send() -> None:
            if previous is not None:
                await previous
            await _send_pushes(self.channel_layer, pushes)

        self._deferred = asyncio.get_running_loop().create_task(send())

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group is not None:  # joined at some point (it may have been replaced, declined or ended since)
            await self.channel_layer.group_discard(group, self.channel_name)
        await self._leave(explicit=False)

    async def _leave(self, *, explicit: bool) -> None:
        joined = self.joined
        if joined is None:
            return
        self.joined = None
        left = await database_sync_to_async(services.visit_leave)(
            visit_id=joined.visit_id,
            participant_id=joined.participant_id,
            connection=joined.connection,
            user=self.user,
            explicit=explicit,
        )
        await self._push(left.pushes)
        if left.current and not left.announce_later:
            # Left on purpose (or no grace): the recording side at once. A drop waits for the grace with the rest of
            # the departure (visit_departure_announce): a host who comes back in time keeps recording.
            await self._recording_participant_left(joined)
        if left.announce_later:
            asyncio.get_running_loop().call_later(
                services.reconnect_grace().total_seconds(),
                _announce_departure_later,
                self.channel_layer,
                joined.visit_id,
                joined.participant_id,
                joined.connection,
            )
        if left.empty:
            asyncio.get_running_loop().call_later(
                services.empty_timeout().total_seconds() + 1, _finish_later, self.channel_layer, joined.visit_id
            )

    # --- Messages from the browser ---

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.joined is None or self.closing:
            return
        try:
            message = parse(text_data if bytes_data is None else None)
            if not self.bucket.take(cost_of(message)):
                raise ProtocolError(CloseCode.RATE_LIMITED)
        except ProtocolError as error:
            logger.info("visit message refused: %s", error.code.name)
            await self._close(error.code)
            await self._leave(explicit=False)
            return
        try:
            await self._handle(message)
        except ActionError as error:
            await self._error(error.code, about=message["type"])
        except ValidationError as error:
            # A service below refused (the encounter cannot start, the appointment changed meanwhile): the
            # connection stays, the sender is told, nothing was written (the service's transaction rolled back).
            await self._error("refused", about=message["type"], reason=getattr(error, "code", None) or "invalid")

    async def _handle(self, message: dict[str, Any]) -> None:
        joined = self.joined
        assert joined is not None
        kind = message["type"]
        if kind == "join":
            return  # the welcome was sent on connecting
        if kind == "leave":
            await self._leave(explicit=True)
            await self.close(code=1000)
            return
        if joined.state != "connected":
            raise ActionError("waiting")  # in the lobby: nothing but leave until admitted
        if kind in _NEGOTIATION:
            await self._relay(message)
        elif kind in ("admit", "decline"):
            service = services.visit_admit if kind == "admit" else services.visit_decline
            if self.user is None:
                raise ActionError("forbidden")
            pushes = await database_sync_to_async(service)(
                visit_id=joined.visit_id,
                by_participant_id=joined.participant_id,
                user=self.user,
                participant_id=message["participant"],
            )
            if kind == "admit":
                # The admitted patient is in the call from this commit on: a host that offers right behind its
                # admit reaches them at once, without asking the database before the group's event comes back.
                for push in pushes:
                    event = push.message.get("event") or {}
                    if event.get("type") == "peer_joined":
                        self.peers[event["participant"]] = {**event, "state": "connected"}
                # The patient is told first; the room's event and the day lists' update follow from a task, and
                # the offer this host sends right behind its admit is relayed meanwhile.
                admitted = [push for push in pushes if push.message["type"] == "room.admitted"]
                await self._push(admitted)
                self._push_soon([push for push in pushes if push.message["type"] != "room.admitted"])
            else:
                await self._push(pushes)
        elif kind == "chat":
            _message, pushes = await database_sync_to_async(services.visit_chat)(
                visit_id=joined.visit_id, participant_id=joined.participant_id, user=self.user, text=message["text"]
            )
            await self._push(pushes)
        elif kind == "media_state":
            await database_sync_to_async(services.visit_media_state)(
                visit_id=joined.visit_id,
                participant_id=joined.participant_id,
                user=self.user,
                modality=message.get("modality"),
                automatic=message.get("auto") is True,
            )
            event = {k: v for k, v in message.items() if k not in ("v",)} | {"from": joined.participant_id}
            await self._push(
                [Push({"type": "room.event", "event": event}, group=services.visit_group(joined.visit_id))]
            )
        elif kind == "quality":
            event = {k: v for k, v in message.items() if k not in ("v", "to")} | {"from": joined.participant_id}
            if "to" in message:
                await self._relay(message)
            else:
                await self._push(
                    [Push({"type": "room.event", "event": event}, group=services.visit_group(joined.visit_id))]
                )
        elif kind in RECORDING_TYPES:
            await self._recording_message(message)
        elif kind == "end":
            if self.user is None:
                raise ActionError("forbidden")
            pushes = await database_sync_to_async(services.visit_end)(
                visit_id=joined.visit_id, by_participant_id=joined.participant_id, user=self.user
            )
            await self._push(pushes)

    async def _relay(self, message: dict[str, Any]) -> None:
        """Offer, answer, candidate (or a directed quality report) to one participant of this visit only."""
        joined = self.joined
        assert joined is not None
        peer = self.peers.get(message["to"])
        if peer is None or peer["state"] != "connected":
            # Room events may still be on their way (a peer that joined a moment ago): ask the database.
            peer = await database_sync_to_async(services.connected_peer)(
                visit_id=joined.visit_id, participant_id=message["to"]
            )
            if peer is None:
                raise ActionError("unknown_participant")
            self.peers[peer["participant"]] = peer
        event = {k: v for k, v in message.items() if k not in ("v", "to")} | {"from": joined.participant_id}
        await self.channel_layer.send(peer["channel"], {"type": "room.relay", "event": event})

    # --- Messages from the channel layer ---

    async def room_relay(self, message: dict[str, Any]) -> None:
        if self.joined is None or self.joined.state != "connected":
            return
        # Only our consumers know this channel's name, and they learnt it from this visit's room (its events or
        # its presences): what arrives here comes from a participant of this visit.
        await self._send_event(message["event"])

    async def room_event(self, message: dict[str, Any]) -> None:
        if self.joined is None:
            return
        event = message["event"]
        kind = event["type"]
        subject = event.get("participant")
        if subject == self.joined.participant_id and kind in ("peer_joined", "peer_left", "waiting"):
            return  # about this participant itself (its own join, or an older tab of it leaving)
        if kind == "peer_joined":
            self.peers[subject] = {**event, "state": "connected"}
        elif kind == "waiting":
            self.peers[subject] = {**event, "state": "waiting"}
        elif kind == "peer_left":
            self.peers.pop(subject, None)
        if self.joined.state != "connected":
            if kind.startswith("recording_"):
                self.recording_unheard = True  # asked again once admitted (room_admitted)
            return  # the waiting room hears nothing of the call
        if kind == "waiting" and not self._is_host():
            return
        if event.get("from") == self.joined.participant_id and kind != "chat":
            return  # its own media state or quality report
        await self._send_event(event)

    async def _send_event(self, event: dict[str, Any]) -> None:
        fields = {k: v for k, v in event.items() if k not in _INTERNAL and k != "type"}
        await self.send(text_data=encode(event["type"], **fields))

    async def room_admitted(self, message: dict[str, Any]) -> None:
        if self.joined is None or message["connection"] != self.joined.connection:
            return
        self.joined.state = "connected"
        peers = [self._public(peer) for peer in self.peers.values() if peer["state"] == "connected"]
        await self._send_frame("admitted", peers=peers)
        # The admit says whether a recording was running or asked for; one that began since, while this participant
        # still waited, left an event here. Only then is the database asked, beside the dispatch loop: the offer of
        # the host who admitted is usually next in this channel, and it should not wait for that.
        if message.get("recording", True) or self.recording_unheard:
            self._recording_shown_soon()

    async def room_declined(self, message: dict[str, Any]) -> None:
        if self.joined is None or message["connection"] != self.joined.connection:
            return
        self.joined = None  # the decline already recorded the leave
        await self._send_frame("declined")
        await self._close(CloseCode.DECLINED)

    async def room_replaced(self, message: dict[str, Any]) -> None:
        if self.joined is None or message["connection"] != self.joined.connection:
            return
        self.joined = None  # the newer connection holds the presence now
        await self._close(CloseCode.REPLACED)

    async def room_ended(self, message: dict[str, Any]) -> None:
        if self.joined is None:
            return
        self.joined = None
        await self._send_frame("end", reason=message.get("reason", "ended"))
        await self._close(CloseCode.ENDED)


async def _send_pushes(layer: Any, pushes: list[Push]) -> None:
    for push in pushes:
        if push.channel:
            await layer.send(push.channel, push.message)
        elif push.group:
            await layer.group_send(push.group, push.message)


def _announce_departure_later(layer: Any, visit_id: int, participant_id: int, connection: int) -> None:
    """The grace after a drop is over. The service decides from the room's rows whether the participant came back
    (to whichever process), so one process's timer never announces a departure another process saw undone."""

    async def announce() -> None:
        try:
            pushes = await database_sync_to_async(services.visit_departure_announce)(
                visit_id=visit_id, participant_id=participant_id, connection=connection
            )
            await _send_pushes(layer, pushes)  # to a recorder's own channel too, in whichever process records
        except Exception:  # the periodic sweep announces it instead; never let a timer crash the process
            logger.exception("announcing a departure failed")

    asyncio.get_running_loop().create_task(announce())


def _finish_later(layer: Any, visit_id: int) -> None:
    async def finish() -> None:
        try:
            pushes = await database_sync_to_async(services.visit_finish_if_abandoned)(visit_id=visit_id)
            await _send_pushes(layer, pushes)
        except Exception:  # a sweep elsewhere may have ended it; never let a timer crash the process
            logger.exception("finishing an abandoned visit failed")

    asyncio.get_running_loop().create_task(finish())
