"""Join to first decoded frame: two aiortc participants through a real daphne process with the Redis layer, and,
in the same run, two aiortc peers connected directly (the baseline of bench.aiortc_setup).

    .venv/bin/python -m bench.call_join [--visits 20]

Each visit: the practitioner and the patient open their websockets at the same moment (session cookies, the
documented protocol), or the patient arrives at the practitioner's open room; the patient waits, the
practitioner's client admits it as soon as it is told and offers right behind the admit, the patient answers,
candidates trickle as `ice` frames, and the clock stops when both have decoded a video frame from the other.
Measured from the join (the websockets start connecting) and from the admit (the practitioner sends `admit`).
Visits and direct pairs alternate, so both see the same machine.
Targets (issue 6): p95 from the join <= 1.0 s; through daphne ÷ direct <= 1.5.
Runs on a scratch database; needs DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time

from bench._visits import BookedVisit, Daphne, build_visits, load, percentile, setup_scratch, summary

SCRATCH = "tc_bench_call_join"

# Steps of one visit, in the order they happen, for the breakdown (practitioner "d", patient "p").
STEPS = [
    ("p", "welcome", "patient welcomed (connect, session, join service, audit)"),
    ("d", "waiting", "practitioner told the patient waits"),
    ("d", "admit", "practitioner sends admit (then prepares and sends the offer)"),
    ("d", "offer_ready", "practitioner's offer ready (aiortc gathers inside setLocalDescription)"),
    ("p", "admitted", "patient told it is admitted (admit service: encounter, appointment, audit)"),
    ("p", "offer_received", "patient has the offer (relayed behind the admit)"),
    ("p", "answer_ready", "patient's answer ready"),
    ("d", "answer_received", "practitioner has the answer (one relay hop)"),
    ("p", "media_connected", "patient's connection up (ICE + DTLS)"),
    ("d", "media_connected", "practitioner's connection up"),
    ("p", "first_frame", "patient decoded a frame"),
    ("d", "first_frame", "practitioner decoded a frame"),
]


async def _through_daphne(http: object, base_url: str, visit: BookedVisit, *, open_room: bool) -> dict[str, float]:
    from bench._aiortc_participant import Participant

    doctor = Participant(http, base_url, visit.path, visit.doctor_cookie, admit=True)
    patient = Participant(http, base_url, visit.path, visit.patient_cookie)
    try:
        if open_room:  # the practitioner's room is open already; the clock starts when the patient arrives
            await doctor.join()
            await asyncio.wait_for(doctor.welcomed.wait(), 10)
            started = time.perf_counter()
            await patient.join()
        else:  # both arrive at the same moment
            started = time.perf_counter()
            await asyncio.gather(doctor.join(), patient.join())
        await asyncio.wait_for(asyncio.gather(doctor.first_frame, patient.first_frame), 20)
    except Exception as error:
        raise RuntimeError(f"visit failed: {error!r}; {doctor.errors + patient.errors}") from error
    finally:
        await patient.close()
        await doctor.close()
    done = max(doctor.marks["first_frame"], patient.marks["first_frame"])
    steps = {
        f"{side}.{name}": (value - started) * 1000
        for side, who in (("d", doctor), ("p", patient))
        for name, value in who.marks.items()
    }
    return {"join": (done - started) * 1000, "admit": (done - doctor.marks["admit"]) * 1000} | steps


def _report(title: str, through: list[dict[str, float]], direct: list[float]) -> bool:
    join = [m["join"] for m in through]
    admit = [m["admit"] for m in through]
    print(f"{title}: {len(through)} visits through daphne + Redis, {len(direct)} direct pairs; {load()}")
    print(f"  through daphne, from the join : {summary(join)}")
    print(f"  through daphne, from the admit: {summary(admit)}")
    print(f"  direct aiortc pair            : {summary(direct)}")
    ratio50 = statistics.median(join) / statistics.median(direct)
    ratio95 = percentile(join, 0.95) / percentile(direct, 0.95)
    admit50 = statistics.median(admit) / statistics.median(direct)
    print(
        f"  through daphne ÷ direct, from the join: p50 {ratio50:.2f}, p95 {ratio95:.2f}; "
        f"from the admit: p50 {admit50:.2f}"
    )
    print("  where the time goes (median ms since the join):")
    for side, name, label in STEPS:
        values = [m[f"{side}.{name}"] for m in through if f"{side}.{name}" in m]
        if values:
            print(f"    {statistics.median(values):7.1f}  {label}")
    met = percentile(join, 0.95) <= 1000 and ratio50 <= 1.5
    print(f"  targets (p95 from the join <= 1000 ms, p50 ratio <= 1.5): {'met' if met else 'NOT met'}")
    return met


async def _run(base_url: str, visits: list[BookedVisit], warmup: int) -> int:
    import aiohttp

    from bench.aiortc_setup import _join_to_first_frame

    results: dict[bool, tuple[list[dict[str, float]], list[float]]] = {False: ([], []), True: ([], [])}
    async with aiohttp.ClientSession() as http:
        for index, visit in enumerate(visits):
            # Alternate scenarios and direct pairs, so a busy moment of the shared machine falls on all alike.
            open_room = index % 2 == 1
            measured = await _through_daphne(http, base_url, visit, open_room=open_room)
            baseline = await _join_to_first_frame()
            if index >= 2 * warmup:
                results[open_room][0].append(measured)
                results[open_room][1].append(baseline)
    _report("1. Both join at once", *results[False])
    _report("2. The patient joins the practitioner's open room", *results[True])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=20, help="visits measured (and as many direct pairs)")
    parser.add_argument("--warmup", type=int, default=2, help="visits run first and not counted")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("Set REDIS_URL: the benchmark measures the Redis channel layer.")
    os.environ.setdefault("ACCESS_LOG_LEVEL", "WARNING")
    with setup_scratch(SCRATCH) as database_url:
        from django.db import connections

        visits = build_visits(2 * (args.visits + args.warmup))
        connections.close_all()
        logging.getLogger("aioice").setLevel(logging.WARNING)
        logging.getLogger("aiortc").setLevel(logging.WARNING)
        with Daphne(database_url) as daphne:
            print(f"daphne on {daphne.url}, Redis layer; {os.cpu_count()} CPUs")
            code = asyncio.run(_run(daphne.url, visits, args.warmup))
    sys.exit(code)


if __name__ == "__main__":
    main()
