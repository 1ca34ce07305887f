"""Media back after a websocket cut and after a daphne restart: a Chromium pair (fake devices) in a call through
the call pages, one real daphne process with the Redis channel layer.

    .venv/bin/python -m bench.call_recovery [--cuts 10] [--restarts 10]

One visit, admitted, media flowing both ways. Then, one after another:
- a websocket cut: one page's socket is dropped as a network would drop it (`dropSocket()`, the patient's and
  the practitioner's in turn); the server sees it go, tells the other side, the page reconnects with its
  back-off and restarts ICE;
- a daphne restart: the process is killed (SIGKILL, no clean shutdown) and started again on the same port at
  once; both pages reconnect.
The clock starts at the cut (the kill) and stops when every page that lost its socket has been welcomed again
and, after that, both pages see framesDecoded rise on a connected connection (two readings, ~0.1 s apart).
Printed with it: when the sockets were back, and for restarts when the new process accepted connections.
Target (issue 6): p95 <= 5 s. Runs on a scratch database; needs DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

from bench._visits import Daphne, build_visits, load, percentile, setup_scratch, summary

SCRATCH = "tc_bench_call_recovery"
POLL = 0.1


def _steady(pages: list[Any], timeout: float = 60) -> None:
    """Both pages decoding (frames rising on a connected connection) before the next cut."""
    from bench._browser import frames

    deadline = time.monotonic() + timeout
    before = [frames(page)[0] for page in pages]
    while True:
        time.sleep(0.5)
        now = [frames(page) for page in pages]
        if all(f > b and state == "connected" for (f, state, _), b in zip(now, before, strict=True)):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the call is not steady: {now}")
        before = [f for f, _, _ in now]


def _until_media_back(pages: list[Any], cut: list[Any], cut_at: float, timeout: float = 60) -> tuple[float, float]:
    """Seconds from the cut until the cut pages are welcomed again, and until media rises on both after that."""
    from bench._browser import frames

    welcomes = {id(page): frames(page)[2] for page in cut}
    back_at: float | None = None
    previous: list[int | None] = [None] * len(pages)
    rose = [False] * len(pages)
    deadline = time.monotonic() + timeout
    while True:
        readings = [frames(page) for page in pages]
        now = time.monotonic()
        if back_at is None and all(
            readings[i][2] > welcomes[id(page)] for i, page in enumerate(pages) if id(page) in welcomes
        ):
            back_at = now
        elif back_at is not None:
            for i, (count, state, _) in enumerate(readings):
                if previous[i] is not None and count > previous[i] and state == "connected":  # type: ignore[operator]
                    rose[i] = True
                previous[i] = count
            if all(rose):
                return back_at - cut_at, now - cut_at
        if now > deadline:
            raise RuntimeError(f"media not back {timeout} s after the cut: {readings}")
        time.sleep(POLL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", type=int, default=10, help="websocket cuts")
    parser.add_argument("--restarts", type=int, default=10, help="daphne restarts")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("Set REDIS_URL: the benchmark measures the Redis channel layer.")
    os.environ.setdefault("ACCESS_LOG_LEVEL", "WARNING")
    from bench._browser import admit, call_pages, chromium, wait_for_frames

    with setup_scratch(SCRATCH) as database_url:
        from django.db import connections

        (visit,) = build_visits(1)
        connections.close_all()
        daphne = Daphne(database_url)
        try:
            daphne.start()
            with chromium() as browser, call_pages(browser, daphne.url, visit) as (patient, practitioner):
                print(f"daphne on {daphne.url}, Redis layer; Chromium {browser.version}; {os.cpu_count()} CPUs")
                pages = [patient, practitioner]
                admit(practitioner)
                wait_for_frames(pages)
                cuts: list[tuple[float, float]] = []
                for index in range(args.cuts):
                    _steady(pages)
                    page = pages[index % 2]
                    cut_at = time.monotonic()
                    page.evaluate("() => window.teleconsultCall.dropSocket()")
                    cuts.append(_until_media_back(pages, [page], cut_at))
                    side = "patient" if page is patient else "practitioner"
                    print(
                        f"  cut {index + 1:2} ({side:12}): sockets back {cuts[-1][0]:5.2f} s, "
                        f"media back {cuts[-1][1]:5.2f} s ({load()})",
                        flush=True,
                    )
                restarts: list[tuple[float, float, float]] = []
                for index in range(args.restarts):
                    _steady(pages)
                    ready: list[float] = []
                    cut_at = time.monotonic()
                    daphne.kill()

                    def restart(ready: list[float] = ready) -> None:
                        daphne.start()
                        ready.append(daphne.listening_at or time.monotonic())

                    starter = threading.Thread(target=restart)
                    starter.start()
                    back, media = _until_media_back(pages, pages, cut_at)
                    starter.join()
                    restarts.append((ready[0] - cut_at, back, media))
                    print(
                        f"  restart {index + 1:2}: new daphne listening {ready[0] - cut_at:5.2f} s, sockets back "
                        f"{back:5.2f} s, media back {media:5.2f} s ({load()})",
                        flush=True,
                    )
        finally:
            daphne.stop()
    print(f"Media back on both pages, from the cut; {load()}")
    if cuts:
        print(f"  websocket cut  ({len(cuts)}): media {summary([m for _, m in cuts], 's')}")
        print(f"                       sockets {summary([b for b, _ in cuts], 's')}")
    if restarts:
        print(f"  daphne restart ({len(restarts)}): media {summary([m for _, _, m in restarts], 's')}")
        print(f"                       sockets {summary([b for _, b, _ in restarts], 's')}")
        print(f"                       new daphne listening {summary([r for r, _, _ in restarts], 's')}")
    worst = max(percentile([m for _, m in cuts], 0.95), percentile([m for _, _, m in restarts], 0.95))
    print(f"  target p95 <= 5 s: {'met' if worst <= 5 else 'NOT met'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
