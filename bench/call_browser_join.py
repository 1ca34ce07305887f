"""First decoded frame after admit: a Chromium pair (fake camera and microphone) through the call pages, one real
daphne process with the Redis channel layer.

    .venv/bin/python -m bench.call_browser_join [--runs 10]

Each run is a fresh visit: the patient's page opens the waiting room, the practitioner's page the room; the
clock starts when the practitioner clicks "Admitir" and stops when both pages' connections report a decoded
video frame (getStats framesDecoded > 0, read inside each page every 10 ms, so the figure does not depend on
how often the benchmark asks). Target (issue 6): p95 <= 2 s. Runs on a scratch database; needs DATABASE_URL
and REDIS_URL.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench._visits import Daphne, build_visits, load, percentile, setup_scratch, summary

SCRATCH = "tc_bench_call_browser_join"

# Stamps the wall-clock time (ms) at which this page first decodes a frame from the other participant.
FIRST_FRAME_WATCH = """
() => {
  window.benchFirstFrameAt = null;
  const tick = () => window.teleconsultCall.stats().then((stats) => {
    if (stats.peers.length && stats.peers[0].framesDecoded > 0) { window.benchFirstFrameAt = Date.now(); }
    else { setTimeout(tick, 10); }
  });
  tick();
}
"""


def _run(browser: object, base_url: str, visit: object) -> dict[str, float]:
    from bench._browser import admit, call_pages

    with call_pages(browser, base_url, visit) as (patient, practitioner):
        for page in (patient, practitioner):
            page.evaluate(FIRST_FRAME_WATCH)
        clicked = time.time() * 1000
        admit(practitioner)
        deadline = time.monotonic() + 30
        stamps: list[float | None] = [None, None]
        while None in stamps:
            if time.monotonic() > deadline:
                raise RuntimeError("no frame decoded within 30 s of the admit")
            time.sleep(0.05)
            stamps = [page.evaluate("() => window.benchFirstFrameAt") for page in (patient, practitioner)]
        return {
            "both": max(stamps) - clicked,  # type: ignore[type-var]
            "patient": stamps[0] - clicked,  # type: ignore[operator]
            "practitioner": stamps[1] - clicked,  # type: ignore[operator]
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1, help="runs first and not counted")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("Set REDIS_URL: the benchmark measures the Redis channel layer.")
    os.environ.setdefault("ACCESS_LOG_LEVEL", "WARNING")
    from bench._browser import chromium

    with setup_scratch(SCRATCH) as database_url:
        from django.db import connections

        visits = build_visits(args.runs + args.warmup)
        connections.close_all()
        with Daphne(database_url) as daphne, chromium() as browser:
            print(f"daphne on {daphne.url}, Redis layer; Chromium {browser.version}; {os.cpu_count()} CPUs")
            results = []
            for index, visit in enumerate(visits):
                result = _run(browser, daphne.url, visit)
                if index >= args.warmup:
                    results.append(result)
                    print(f"  run {len(results):2}: {result['both']:6.0f} ms ({load()})", flush=True)
    both = [r["both"] for r in results]
    print(f"Admit to first decoded frame on both pages, {len(both)} runs; {load()}")
    print(f"  both pages      : {summary(both)}")
    print(f"  patient's page  : {summary([r['patient'] for r in results])}")
    print(f"  practitioner's  : {summary([r['practitioner'] for r in results])}")
    met = percentile(both, 0.95) <= 2000
    print(f"  target p95 <= 2000 ms: {'met' if met else 'NOT met'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
