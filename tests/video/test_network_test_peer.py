"""The network-test peer in this process: it closes itself after its time, is bounded in number, leaves no task
behind, and recommends by the documented thresholds (VID-5)."""

from __future__ import annotations

import asyncio

import pytest

from tests.video.aiortc_support import Caller, run_caller
from video import network_test
from video.network_test import (
    THRESHOLDS,
    NetworkTestBusy,
    NetworkTestRefused,
    active_peers,
    network_test_answer,
    recommend,
)


async def _answer(sdp: str) -> dict[str, str]:
    answer, _ = await network_test_answer(sdp=sdp)
    return {"sdp": answer.sdp, "type": answer.type}


def _other_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    return {task for task in asyncio.all_tasks() if task not in before and not task.done()} - {asyncio.current_task()}


@pytest.mark.asyncio
async def test_a_full_test_then_nothing_left_running():
    before = asyncio.all_tasks()
    outcome = await run_caller(_answer)
    assert outcome.result is not None
    assert outcome.result["recommendation"] == "video"
    # The caller hung up: the server peer noticed and closed, and every task it started is gone.
    for _ in range(100):
        if active_peers() == 0 and not _other_tasks(before):
            break
        await asyncio.sleep(0.05)
    assert active_peers() == 0
    assert not _other_tasks(before)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("poor_link", "measure", "bound"),
    [({"echo_delay": 0.6}, "rtt_ms", 600), ({"drop_every": 5}, "loss", 0.15)],
    ids=["slow", "lossy"],
)
async def test_a_poor_link_gets_audio(poor_link, measure, bound):
    outcome = await run_caller(_answer, Caller(**poor_link), video_frames=1)
    assert outcome.result is not None
    assert outcome.result[measure] >= bound
    assert outcome.result["recommendation"] == "audio"
    await _until_no_peers()


async def _until_no_peers() -> None:
    for _ in range(100):
        if active_peers() == 0:
            return
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_a_peer_whose_caller_never_connects_closes_after_its_time(settings):
    settings.NETWORK_TEST_SECONDS = 1
    before = asyncio.all_tasks()
    caller = Caller()
    try:
        _, peer = await network_test_answer(sdp=await caller.offer())  # the caller never takes the answer
        assert active_peers() == 1
        await asyncio.wait_for(peer.closed.wait(), 3)
    finally:
        await caller.close()
    assert active_peers() == 0
    await asyncio.sleep(0.1)
    assert not _other_tasks(before)


@pytest.mark.asyncio
async def test_beyond_the_limit_no_peer_is_started(settings):
    settings.NETWORK_TEST_MAX_PEERS = 1
    first, second = Caller(), Caller()
    try:
        _, peer = await network_test_answer(sdp=await first.offer())
        with pytest.raises(NetworkTestBusy):
            await network_test_answer(sdp=await second.offer())
        assert active_peers() == 1
        await peer.close()
        _, peer = await network_test_answer(sdp=await second.offer())
        await peer.close()
    finally:
        await first.close()
        await second.close()
    assert active_peers() == 0


@pytest.mark.asyncio
async def test_malformed_offer_is_refused_and_closed():
    with pytest.raises(NetworkTestRefused):
        await network_test_answer(sdp="v=0\r\nm=audio nonsense\r\n")
    assert active_peers() == 0


@pytest.mark.asyncio
async def test_the_server_peer_never_uses_a_stun_server(settings):
    # Even with STUN configured for the browsers, the server peer gathers host candidates only.
    settings.ICE_SERVERS = [{"urls": ["stun:192.0.2.1:3478"]}]
    caller = Caller()
    try:
        answer, peer = await network_test_answer(sdp=await caller.offer())
        assert " typ srflx" not in answer.sdp
        assert " typ host" in answer.sdp
        await peer.close()
    finally:
        await caller.close()


@pytest.mark.parametrize(
    ("rtt_ms", "loss", "bitrate_kbps", "expected"),
    [
        (40.0, 0.0, 800.0, "video"),
        (THRESHOLDS["max_rtt_ms"], THRESHOLDS["max_loss"], THRESHOLDS["min_bitrate_kbps"], "video"),
        (THRESHOLDS["max_rtt_ms"] + 1, 0.0, 800.0, "audio"),
        (40.0, THRESHOLDS["max_loss"] + 0.01, 800.0, "audio"),
        (40.0, 0.0, THRESHOLDS["min_bitrate_kbps"] - 1, "audio"),
        (None, 1.0, 0.0, "audio"),
    ],
)
def test_recommendation_thresholds(rtt_ms, loss, bitrate_kbps, expected):
    assert recommend(rtt_ms=rtt_ms, loss=loss, bitrate_kbps=bitrate_kbps) == expected


def test_probe_train_exceeds_the_video_threshold():
    # The probe must be able to show more than the video threshold, or "video" could never be recommended.
    rate_kbps = network_test.PROBE_PADDING * 8 / network_test.PROBE_INTERVAL / 1000
    assert rate_kbps > THRESHOLDS["min_bitrate_kbps"] * 2


def test_ice_libraries_do_not_log_addresses_at_info():
    import logging

    for name in ("aioice", "aioice.ice", "aiortc"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
