"""The recorder's media side without the network: how the writer places pictures (their shape kept) and sound (a
participant's sound after a gap placed where it arrived), and who the recorder turns away."""

from __future__ import annotations

import asyncio
import itertools
from fractions import Fraction

import av
import pytest
from channels.layers import InMemoryChannelLayer

from tests.video.recording_support import block_extent, coloured_frame, frames_by_stream, rgb_at
from video.recorder import HEIGHT, WIDTH, Recorder, _Writer

GREY, WHITE = (128, 128, 128), (235, 128, 128)


def _white(rgb: tuple[int, int, int]) -> bool:
    return min(rgb) > 200


def _grey(rgb: tuple[int, int, int]) -> bool:
    return all(100 < value < 160 for value in rgb)


def _write(tmp_path, slots, frames) -> dict[str, list]:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "rec-test.mkv")
    writer = _Writer(path, slots)
    for index, frame, at in frames:
        writer.put(index, frame, at=writer.t0 + at)
    writer.close()
    assert not writer.error
    with open(path, "rb") as file:
        return frames_by_stream(file.read())


@pytest.mark.parametrize(("width", "height"), [(180, 320), (720, 1280), (480, 480), (1280, 720)])
def test_pictures_keep_their_shape(tmp_path, width, height):
    """A grey picture with a white square in the middle, of any shape: in the file the square is still square,
    the picture fills the frame's height or width, and what is left is black bars."""
    source = coloured_frame(width, height, GREY, WHITE)
    frames = []
    for number in range(10):
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane, target in zip(source.planes, frame.planes, strict=True):
            target.update(bytes(plane))
        frames.append((0, frame, number / 10))
    decoded = _write(tmp_path, [(7, "video")], frames)["participant 7 video"]
    assert len(decoded) == 10
    picture = decoded[-1]
    assert (picture.width, picture.height) == (WIDTH, HEIGHT)
    block_width, block_height = block_extent(picture, _white)
    assert block_height > 10 and abs(block_width - block_height) <= 4, (block_width, block_height)
    scale = min(WIDTH / width, HEIGHT / height)
    shown_width = width * scale
    if shown_width < WIDTH - 8:  # bars at the sides, the picture between them
        bar = int((WIDTH - shown_width) / 2)
        assert max(rgb_at(picture, bar // 2, HEIGHT // 2)) < 40
        assert max(rgb_at(picture, WIDTH - 1 - bar // 2, HEIGHT // 2)) < 40
        assert _grey(rgb_at(picture, bar + 6, HEIGHT // 2))
    else:  # as wide as the frame: grey from edge to edge
        assert _grey(rgb_at(picture, 2, 10)) and _grey(rgb_at(picture, WIDTH - 3, 10))


def _sound(samples: int = 960) -> av.AudioFrame:
    frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
    frame.planes[0].update(bytes(samples * 4))
    frame.sample_rate = 48_000
    frame.time_base = Fraction(1, 48_000)
    return frame


def test_sound_after_a_gap_starts_where_it_arrived(tmp_path):
    """One second of sound, then three seconds of nothing (the page reloading), then sound again: the second part
    is placed three seconds later in the file, not straight after the first (which would shift it earlier)."""
    frames = [(0, _sound(), 0.02 * n) for n in range(50)]
    frames += [(0, _sound(), 4.0 + 0.02 * n) for n in range(50)]
    sound = _write(tmp_path, [(3, "audio")], frames)["participant 3 audio"]
    times = [float(frame.time) for frame in sound]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) > 2.5, max(gaps)
    assert times[-1] > 4.5


def test_the_recorder_turns_away_who_was_not_in_the_call_at_the_start(tmp_path, settings):
    """Only participants recorded from the start have streams in the file: anyone else is told recording_late."""
    settings.RECORDINGS_TMP_DIR = tmp_path / "scratch"

    async def scenario() -> dict:
        layer = InMemoryChannelLayer()
        recorder = Recorder(recording_id="6f1c0000-0000-4000-8000-000000000001", kind="audio", layer=layer)
        await recorder.open()
        recorder.expect([1, 2])
        reply = await layer.new_channel()
        await layer.send(recorder.channel, {"type": "recorder.offer", "participant": 3, "reply": reply, "sdp": "v=0"})
        answer = await asyncio.wait_for(layer.receive(reply), 10)
        recorder.writer.close()
        await recorder.discard()
        return answer

    answer = asyncio.run(scenario())
    assert answer["event"] == {"type": "error", "code": "recording_late", "about": "recording_offer"}
