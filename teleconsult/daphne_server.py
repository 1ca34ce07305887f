"""daphne's server with a stop that drains: SIGTERM closes the websockets, lets their consumers leave, then exits.

Imported by teleconsult.daphne_main only after it set uvloop's loop policy: importing daphne.server makes daphne's
event loop.

daphne's own stop (`Server.kill_all_applications`, run before the reactor shuts down) cancels every application
instance at once: no browser gets a close (only a dead connection, 1006) and no consumer runs its disconnect. And
it breaks off at the first connection daphne has no application for yet (an HTTP request still arriving, or the
upgrade request of a websocket, kept for up to a second after its handshake: routine in a busy process) with a
KeyError that Twisted logs where nobody reads it; the reactor then stops with the remaining consumers not even
cancelled, and their database calls queued on asgiref's single sync thread run one after another while the
interpreter exits (a crowd joining at that moment: 4–5 s for 200 visits, 8 s for 400 on the 2-core machine, more
under load), each writing for a connection about to vanish. docs/decisions.md.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer

logger = logging.getLogger(__name__)

# RFC 6455's "going away": the server is going down. The pages reconnect after it as after any close that is not
# final (docs/signalling.md), and the listening socket is closed first, so they reach another process.
GOING_AWAY = 1001
# How long the consumers get to see their websocket closed and run their departure (video.services.visit_leave,
# one transaction each on the sync thread); whatever still runs then is cancelled. A few hundred departures fit.
DRAIN_SECONDS = 5.0
# What the cancelled instances get to unwind (an HTTP request's sync view is waited for by Django itself).
CANCEL_SECONDS = 1.0
# How often the drain looks again for websockets to close (one still in its handshake is closed once it opens).
_LOOK_AGAIN_SECONDS = 0.05


class DrainingServer(Server):
    """daphne's Server whose stop closes each websocket with 1001 and waits for the application instances to finish
    (the consumers' disconnect handling runs), up to DRAIN_SECONDS, before it cancels the rest."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ports: list[Any] = []

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    def kill_all_applications(self) -> defer.Deferred[None]:
        # daphne's "before shutdown" trigger: the reactor shuts down once the returned Deferred fires.
        return defer.Deferred.fromFuture(asyncio.ensure_future(self.drain()))

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        for port in self.ports:
            port.stopListening()  # new connections go to another process from now on
        deadline = loop.time() + DRAIN_SECONDS
        running = self._close_websockets()
        while running and loop.time() < deadline:
            await asyncio.wait(running, timeout=min(_LOOK_AGAIN_SECONDS, deadline - loop.time()))
            running = self._close_websockets()
        if running:
            # Their queued database calls are dropped with them, so the exit does not wait for those; a call
            # already running on the sync thread finishes (its transaction commits) before the process exits.
            logger.warning("stopping: %s application instances cancelled after the drain", len(running))
            for application in running:
                application.cancel()
            await asyncio.wait(running, timeout=CANCEL_SECONDS)
        logger.info("stopping: connections drained")

    def _close_websockets(self) -> list[asyncio.Future[Any]]:
        """Sends 1001 to every open websocket not closing yet; returns the application instances still running."""
        running = []
        for protocol, details in list(self.connections.items()):
            if isinstance(protocol, WebSocketProtocol) and protocol.state == WebSocketProtocol.STATE_OPEN:
                # autobahn's public sendClose takes only 1000 and 3000–4999; daphne itself closes with 1011 this way.
                protocol.sendCloseFrame(code=GOING_AWAY, reasonUtf8=b"server stopping", isReply=False)
            application = details.get("application_instance")
            if application is not None and not application.done():
                running.append(application)
        return running
