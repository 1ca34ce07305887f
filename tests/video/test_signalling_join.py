"""Joining while the process's one sync thread is busy (a join storm: many visits connecting at once, each
connection's database work queued on asgiref's single thread-sensitive thread): the websocket handshake is
accepted without a turn of that thread, so daphne's 5 s handshake timeout never meets the queue; the welcome,
which needs the database, follows once the thread is free. Paired with channels' AuthMiddleware in front, whose
own user lookup holds the handshake until the thread is free."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.sessions import CookieMiddleware, SessionMiddleware
from channels.testing import WebsocketCommunicator
from django.db import connections

from teleconsult.routing import websocket_urlpatterns
from tests.video.signalling_support import make_visit, receive, signed_in_cookie, socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def _close_thread_connections():
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def _in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest_asyncio.fixture
async def busy_sync_thread() -> AsyncIterator[threading.Event]:
    """asgiref's thread-sensitive thread (where database_sync_to_async runs) held until the event is set."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(60)

    holder = asyncio.ensure_future(sync_to_async(hold)())
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
    assert started.is_set()
    try:
        yield release
    finally:
        release.set()
        await holder


@pytest.fixture
def paths(personas):
    return {
        "visit": (make_visit(personas).path, signed_in_cookie(personas.practitioner), "welcome"),
        "waiting list": ("/ws/waiting/", signed_in_cookie(personas.practitioner), "waiting_list"),
    }


@pytest.mark.parametrize("which", ["visit", "waiting list"])
async def test_the_handshake_is_accepted_while_the_sync_thread_is_busy(paths, busy_sync_thread, which):
    path, cookie, first = paths[which]
    communicator = socket(path, cookie)
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    # The first frame needs the database, so the thread: nothing before it is free.
    assert await communicator.receive_nothing(timeout=0.2)
    busy_sync_thread.set()
    assert (await receive(communicator, timeout=10))["type"] == first
    await communicator.disconnect()


async def test_behind_channels_auth_middleware_the_handshake_waits_for_the_thread(paths, busy_sync_thread):
    # The other half of the pair: the same consumer behind channels' AuthMiddleware (the stack before), which looks
    # the user up in a thread hop of its own before the consumer runs, gets no handshake while the thread is busy.
    path, cookie, _first = paths["visit"]
    application = CookieMiddleware(SessionMiddleware(AuthMiddleware(URLRouter(websocket_urlpatterns))))
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie.encode())]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    with pytest.raises(asyncio.TimeoutError):
        await communicator.connect(timeout=1)
