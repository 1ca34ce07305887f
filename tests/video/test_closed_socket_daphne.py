"""A participant's browser closes its websocket while messages for it are still on their way, through a real
daphne process: the consumer must not send on the closed socket (daphne logs "Attempt to send on a closed
protocol" and ends the consumer, whose departure is then never handled), and the others carry on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from django.db import connections

from tests.teleconsult.support import run_in_own_loop
from tests.video.daphne_processes import daphne_processes, next_frame
from tests.video.signalling_support import frame, make_visit, signed_in_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

BIG_SDP = "v=0\r\n" + "a=x" * 20_000  # 60 KB: the protocol's largest kind of message


@pytest.fixture
def daphne_with_log(redis_url, tmp_path) -> Iterator[tuple[int, Path]]:
    log = tmp_path / "daphne.log"
    with daphne_processes(1, redis_url=redis_url, extra_env={"VIDEO_RECONNECT_GRACE_SECONDS": "1"}, log=log) as (port,):
        yield port, log


class RawSocket:
    """A websocket client on a bare TCP socket with a tiny receive buffer, so that the test decides when it stops
    reading: a browser whose tab is busy, or a phone whose radio is slow, as the server sees it."""

    def __init__(self, port: int, path: str, cookie: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(10)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
            f"Cookie: {cookie}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(4096)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            assert chunk, "closed"
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def next(self, kind: str) -> dict[str, Any]:
        while True:
            first, second = self._exactly(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._exactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._exactly(8))[0]
            payload = self._exactly(size)
            if first & 0x0F == 1 and json.loads(payload)["type"] == kind:
                return json.loads(payload)

    def send_close(self) -> None:
        """The close handshake's first frame (masked, as from a client), then no more reading."""
        mask = os.urandom(4)
        payload = struct.pack("!H", 1000)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.sendall(bytes([0x88, 0x80 | len(payload)]) + mask + masked)

    def abort(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def test_relaying_to_a_socket_that_just_closed_is_quiet_and_its_departure_still_counts(personas, daphne_with_log):
    port, log = daphne_with_log
    visit = make_visit(personas)
    doctor_cookie = signed_in_cookie(personas.practitioner)
    patient_cookie = signed_in_cookie(personas.patient)
    connections.close_all()
    path = f"/ws/visit/{visit.appointment.public_id}/"

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            doctor = await http.ws_connect(
                f"ws://127.0.0.1:{port}{path}", headers={"Cookie": doctor_cookie, "Origin": f"http://127.0.0.1:{port}"}
            )
            doctor_id = (await next_frame(doctor, "welcome"))["participant"]
            patient = await asyncio.to_thread(RawSocket, port, path, patient_cookie)
            patient_id = (await asyncio.to_thread(patient.next, "welcome"))["participant"]
            await next_frame(doctor, "waiting")
            await doctor.send_str(frame("admit", participant=patient_id))
            await asyncio.to_thread(patient.next, "admitted")
            await next_frame(doctor, "peer_joined")
            # The patient's page stops reading while the practitioner's offers pile up on its connection (more
            # than the kernel's buffers hold), then its browser closes the websocket: the server answers the close
            # but cannot finish closing the TCP connection before the data ahead of it went out.
            for _ in range(80):
                await doctor.send_str(frame("offer", to=patient_id, sdp=BIG_SDP))
            await doctor.send_str(frame("chat", text="¿Me escucha?"))
            await next_frame(doctor, "chat")  # every offer was taken by the server before this
            await asyncio.to_thread(patient.send_close)
            await asyncio.sleep(0.5)
            # Relayed to the patient's consumer, whose socket is closed but whose disconnect has not come yet.
            await doctor.send_str(frame("offer", to=patient_id, sdp="v=0\r\n"))
            await doctor.send_str(frame("chat", text="¿Sigue ahí?"))
            assert (await next_frame(doctor, "chat"))["text"] == "¿Sigue ahí?"
            await asyncio.sleep(0.5)
            # The connection is gone for good: the patient's departure reaches the practitioner after the grace.
            patient.abort()
            assert (await next_frame(doctor, "peer_left"))["participant"] == patient_id
            await doctor.send_str(frame("chat", text="Se fue"))
            assert (await next_frame(doctor, "chat"))["text"] == "Se fue"
            assert doctor_id
            await doctor.close()

    run_in_own_loop(lambda: asyncio.wait_for(scenario(), 60))
    logged = log.read_text()
    assert "Attempt to send on a closed protocol" not in logged, logged
    assert "Exception inside application" not in logged, logged
