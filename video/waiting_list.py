"""The practitioner's day list, live: /ws/waiting/ tells a signed-in host which of their visits have a patient
in the waiting room, and tells again whenever that changes.

Each message is the whole list (appointment public ids and since when), never a name or anything clinical:
the page already shows who each appointment is for, so it only marks rows. Sending the whole list rather
than changes means a missed or reordered event can never leave a row marked wrongly.
"""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.models import Role, User
from accounts.signin_state import session_user
from video import services
from video.protocol import CLOSE_REASONS, CloseCode, encode
from video.rooms import waiting_for


def _signed_in_host(session: Any) -> int | None:
    # The session's user is looked up in this same database call (not by a middleware before the handshake).
    signed_in = services.signed_in_user(session_user(session), session)
    if signed_in is None or signed_in.role != Role.PRACTITIONER:
        return None
    return int(signed_in.pk)


def _waiting_list(user_id: int) -> list[dict[str, str]]:
    practitioner = User.objects.get(pk=user_id)
    seen: dict[str, str] = {}
    for presence in waiting_for(practitioner):
        seen.setdefault(str(presence.visit.appointment.public_id), presence.joined_at.isoformat())
    return [{"appointment": public_id, "since": since} for public_id, since in seen.items()]


class WaitingListConsumer(AsyncWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        self.group = None
        await self.accept()
        user_id = await database_sync_to_async(_signed_in_host)(self.scope.get("session"))
        if user_id is None:
            code = CloseCode.UNAUTHENTICATED
            await self.close(code=int(code), reason=CLOSE_REASONS[code])
            return
        self.user_id = user_id
        self.group = services.practitioner_group(user_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self._send_list()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # As VisitConsumer.dispatch: channels' own runs close_old_connections in the sync thread before every message,
        # websocket.connect included, so the handshake would wait for a turn of that one thread (which a crowd of
        # joins queues on). This consumer reaches the database only through database_sync_to_async, which closes
        # old connections itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        return  # the list only speaks; anything the browser sends is ignored

    async def _send_list(self) -> None:
        visits = await database_sync_to_async(_waiting_list)(self.user_id)
        await self.send(text_data=encode("waiting_list", visits=visits))

    # Events from video.services (group practitioner_group(user id)).
    async def visit_waiting(self, event: dict[str, Any]) -> None:
        await self._send_list()

    async def visit_waiting_over(self, event: dict[str, Any]) -> None:
        await self._send_list()
