"""Recording costs (VID-8): the streaming encryption of a finished file, and the recorder's encoding per participant.

    .venv/bin/python -m bench.recording [--megabytes 128] [--seconds 20]

1. teleconsult.filecrypto: encrypting a file of `--megabytes` into another file, and decrypting it as the download
   view does (chunks discarded), in MB/s of plaintext.
2. video.recorder's writer: `--seconds` of media for 1, 2 and 4 participants (640×360 moving pictures at 15 frames
   a second in the decoder's yuv420p, and 48 kHz stereo sound in 20 ms frames) pushed to the
   writer thread as fast as it takes them. Printed: CPU seconds the process spent per second of media (what a
   recording costs the daphne process; above 1.0 per core available it could not keep up) and the file size.
   The pictures are a smooth moving pattern with some noise: real camera pictures cost somewhat more to encode.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import django


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_crypto(megabytes: int) -> None:
    from teleconsult import filecrypto

    key = filecrypto.new_file_key()
    with tempfile.TemporaryDirectory() as scratch:
        plain_path, sealed_path = os.path.join(scratch, "plain"), os.path.join(scratch, "sealed")
        with open(plain_path, "wb") as plain:
            for _ in range(megabytes):
                plain.write(os.urandom(1 << 20))
        started = time.perf_counter()
        with open(plain_path, "rb") as plain, open(sealed_path, "wb") as sealed:
            filecrypto.encrypt_stream(plain, sealed, key=key, purpose="bench")
            sealed.flush()
            os.fsync(sealed.fileno())
        encrypt = time.perf_counter() - started
        started = time.perf_counter()
        with open(sealed_path, "rb") as sealed:
            for _chunk in filecrypto.decrypt_stream(sealed, key=key, purpose="bench"):
                pass
        decrypt = time.perf_counter() - started
    print(f"filecrypto, {megabytes} MiB:")
    print(f"  encrypt file → file (with fsync)    {megabytes / encrypt:8.0f} MiB/s")
    print(f"  decrypt as a stream                 {megabytes / decrypt:8.0f} MiB/s")


def _pictures(count: int) -> list[bytes]:
    """`count` Y planes of a smooth pattern moving sideways, with a little noise (as a camera's would have)."""
    import math
    import random

    from video.recorder import HEIGHT, WIDTH

    rng = random.Random(1)
    row = [int((math.sin(x / 23.0) + 1) * 60 + 40) for x in range(WIDTH)]
    planes = []
    for index in range(count):
        shift = index * 7
        moved = row[shift % WIDTH :] + row[: shift % WIDTH]
        plane = bytearray()
        for y in range(HEIGHT):
            offset = int(math.cos(y / 17.0) * 30)
            plane.extend(min(255, max(0, value + offset + rng.randrange(8))) for value in moved)
        planes.append(bytes(plane))
    return planes


def bench_writer(participants: int, seconds: int, pictures: list[bytes]) -> tuple[float, float, int]:
    import array
    import math

    import av

    from video.recorder import AUDIO_RATE, HEIGHT, MAX_FPS, WIDTH, _Writer

    samples = AUDIO_RATE // 50
    tone = array.array("h")
    for i in range(samples):
        value = int(math.sin(i * 2 * math.pi * 440 / AUDIO_RATE) * 8000)
        tone.extend((value, value))
    grey = bytes([128]) * (WIDTH * HEIGHT // 4)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "rec-bench.mkv")
        slots = [(participant, kind) for participant in range(participants) for kind in ("video", "audio")]
        cpu, wall = _cpu(), time.perf_counter()
        writer = _Writer(path, slots)
        t0 = writer.t0
        shown = 0
        for step in range(seconds * 50):  # 20 ms steps
            at = t0 + step / 50
            for participant in range(participants):
                audio = av.AudioFrame(format="s16", layout="stereo", samples=samples)
                audio.planes[0].update(tone.tobytes())
                audio.sample_rate = AUDIO_RATE
                writer.queue.put((2 * participant + 1, audio, at))
                if step % (50 // MAX_FPS) == 0:
                    picture = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
                    picture.planes[0].update(pictures[(shown + participant * 5) % len(pictures)])
                    picture.planes[1].update(grey)
                    picture.planes[2].update(grey)
                    writer.queue.put((2 * participant, picture, at))
            if step % (50 // MAX_FPS) == 0:
                shown += 1
        writer.close()
        cpu, wall = _cpu() - cpu, time.perf_counter() - wall
        size = os.path.getsize(path)
        frames = sum(writer.frames)
    assert frames > 0 and not writer.error, writer.error
    return cpu / seconds, wall / seconds, size


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=128)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleconsult.settings")
    django.setup()
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    bench_crypto(args.megabytes)
    pictures = _pictures(60)
    print(f"recorder writer, {args.seconds} s of media:")
    for participants in (1, 2, 4):
        cpu, wall, size = bench_writer(participants, args.seconds, pictures)
        print(
            f"  {participants} participant(s): {cpu:5.2f} CPU s and {wall:5.2f} wall s per second of media,"
            f" {size / args.seconds / 1024:6.0f} KiB per second of media"
        )
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
