"""The recording part of the visit's websocket consumer (VID-8): the `recording_*` messages, starting the recorder
in this process for the host who asked, forwarding participants' offers to it, and stopping it when that host
leaves. Thin like the rest: parse (video.protocol) → gate and write (video.recording) → push."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async

from video import recording as recordings
from video import services
from video.services import ActionError

logger = logging.getLogger(__name__)


def recording_on_connect(
    *, visit_id: int, participant_id: int, connected: bool
) -> tuple[list[Any], dict[str, Any] | None]:
    """The check of a joiner's consent and, when nothing stopped and they are in the call, the running recording to
    show them. Run inside the connection's one database call (video.consumers), and with one query when, as most of
    the time, nothing is being recorded or asked for."""
    if not recordings.recording_live_exists(visit_id=visit_id):
        return [], None
    pushes = recordings.recording_check_joiner(visit_id=visit_id, participant_id=participant_id)
    if pushes or not connected:
        return pushes, None
    # A host back from a drop whose request everybody agreed to meanwhile: it starts now, here.
    pushes = recordings.recording_request_resume(visit_id=visit_id, participant_id=participant_id)
    return pushes, recordings.live_recording_event(visit_id=visit_id, participant_id=participant_id)


class RecordingMixin:
    """Mixed into VisitConsumer; uses its `joined`, `user`, `channel_layer`, `_push` and `_send_event`."""

    joined: Any
    user: Any
    channel_layer: Any
    channel_name: str
    # Tasks beside the dispatch loop, held until they finish (the loop keeps only weak references to tasks).
    _background: set[asyncio.Task[None]]

    async def _push(self, pushes: list[Any]) -> None:  # pragma: no cover - VisitConsumer's
        raise NotImplementedError

    async def _send_event(self, event: dict[str, Any]) -> None:  # pragma: no cover - VisitConsumer's
        raise NotImplementedError

    async def _recording_on_connect(self, found: tuple[list[Any], dict[str, Any] | None] | None) -> None:
        """A participant connected: a recording they did not consent to stops; one they did is shown to them.
        `found`: what the connection's database call found (None: it could not tell, ask again)."""
        joined = self.joined
        if found is None:
            found = await database_sync_to_async(recording_on_connect)(
                visit_id=joined.visit_id, participant_id=joined.participant_id, connected=joined.state == "connected"
            )
        pushes, event = found
        await self._push(pushes)
        if event is not None:
            await self._recording_show(event)

    def _recording_shown_soon(self) -> None:
        """Entering the call (admitted from the waiting room) while a recording runs: say so, from a task of its own
        (the consumer keeps handling its messages meanwhile)."""
        task = asyncio.get_running_loop().create_task(self._recording_shown())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _recording_shown(self) -> None:
        joined = self.joined
        if joined is None:
            return
        try:
            event = await database_sync_to_async(recordings.live_recording_event)(
                visit_id=joined.visit_id, participant_id=joined.participant_id
            )
            if event is not None and self.joined is joined:  # still in this visit
                await self._recording_show(event)
        except Exception:  # never lost silently, never the consumer's end
            logger.exception("telling an admitted participant of the recording failed")

    async def _recording_show(self, event: dict[str, Any]) -> None:
        await self._send_event(event)
        joined = self.joined
        if event["type"] == "recording_started" and joined.participant_id not in event["participants"]:
            # In the call now but not when it started: the file has no stream for them (docs/recording.md). The
            # hosts are told, and may record again with everyone in one click.
            await self._push(
                [
                    services.Push(
                        {
                            "type": "room.event",
                            "event": {
                                "type": "recording_incomplete",
                                "recording": event["recording"],
                                "participant": joined.participant_id,
                                "role": joined.role,
                            },
                        },
                        group=services.visit_group(joined.visit_id),
                    )
                ]
            )

    async def _recording_message(self, message: dict[str, Any]) -> None:
        joined = self.joined
        kind = message["type"]
        if kind == "recording_start":
            requested = await database_sync_to_async(recordings.recording_request)(
                visit_id=joined.visit_id, participant_id=joined.participant_id, user=self.user, kind=message["kind"]
            )
            if requested.error:
                raise ActionError(requested.error)
            await self._push(requested.pushes)
            if requested.start_now:
                await self._recorder_start(str(requested.recording.public_id), requested.recording.kind)
        elif kind in ("recording_agree", "recording_refuse"):
            pushes = await database_sync_to_async(recordings.recording_answer)(
                visit_id=joined.visit_id,
                participant_id=joined.participant_id,
                user=self.user,
                recording_id=message["recording"],
                agree=kind == "recording_agree",
            )
            await self._push(pushes)
        elif kind == "recording_stop":
            pushes = await database_sync_to_async(recordings.recording_stop)(
                visit_id=joined.visit_id, participant_id=joined.participant_id, user=self.user
            )
            await self._push(pushes)
        elif kind == "recording_offer":
            channel = await database_sync_to_async(recordings.recorder_target)(
                visit_id=joined.visit_id, recording_id=message["recording"]
            )
            if channel is None:
                raise ActionError("no_recording")
            # The participant id is ours, not the page's: the recorder trusts it because only consumers know
            # its channel (from the row of a recording of their own visit).
            await self.channel_layer.send(
                channel,
                {
                    "type": "recorder.offer",
                    "participant": joined.participant_id,
                    "reply": self.channel_name,
                    "sdp": message["sdp"],
                },
            )

    async def _recorder_start(self, recording_id: str, kind: str) -> None:
        # Imported here: aiortc and its codecs load with the first recording, not at every process start.
        from video.recorder import Recorder

        joined = self.joined
        try:
            recorder = Recorder(recording_id=recording_id, kind=kind, layer=self.channel_layer)
            channel = await recorder.open()
        except Exception:  # no scratch space, no channel: the request is withdrawn, everybody is told
            logger.exception("the recorder could not start")
            pushes = await database_sync_to_async(recordings.recording_stop_for)(
                visit_id=joined.visit_id, reason="recorder_failed", recording_id=recording_id
            )
            await self._push(pushes)
            return
        try:
            pushes, participants = await database_sync_to_async(recordings.recording_begin)(
                visit_id=joined.visit_id,
                participant_id=joined.participant_id,
                recording_id=recording_id,
                recorder_channel=channel,
            )
        except BaseException:
            await recorder.discard()
            raise
        if participants is None:
            await recorder.discard()
        else:
            recorder.expect(participants)
        await self._push(pushes)

    async def _recording_participant_left(self, joined: Any) -> None:
        """The host who asked for the recording left (on purpose, or without a reconnect grace; a drop is handled when
        its grace is over, by services.visit_departure_announce): the recording stops with them (the recorder,
        in whichever process, hears it on its channel and finalises the file). Staff a request waits for are
        not asked any more."""
        pushes = await database_sync_to_async(recordings.recording_participant_left)(
            visit_id=joined.visit_id, participant_id=joined.participant_id
        )
        await self._push(pushes)

    # --- From the channel layer ---

    async def recording_go(self, message: dict[str, Any]) -> None:
        """Everybody agreed to this host's request: start the recorder here."""
        if self.joined is None:
            return
        try:
            await self._recorder_start(message["recording"], message.get("kind", ""))
        except ActionError as error:
            await self._send_event({"type": "error", "code": error.code, "about": "recording_start"})

    async def recorder_reply(self, message: dict[str, Any]) -> None:
        """The recorder's answer (or its refusal) to this participant's offer."""
        if self.joined is None:
            return
        await self._send_event(message["event"])
