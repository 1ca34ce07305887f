"""daphne for the benchmarks as production starts it (`teleconsult.daphne_main`, on uvloop), optionally under
cProfile counting CPU time, not wall time; `--asyncio` runs it on asyncio's own loop instead, for comparison.

Wall-clock profiles of a server on a shared machine blame whatever call was running when the scheduler
gave the core to another process (socket sends, epoll); CPU time of the event loop's thread shows where
the server itself spends.
Usage: python -m bench._daphne [--profile STATS_PATH] [--asyncio] <daphne arguments>
"""

from __future__ import annotations

import argparse
import cProfile
import runpy
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--profile", metavar="STATS_PATH")
    parser.add_argument("--asyncio", action="store_true", help="asyncio's loop, not uvloop's (not production's)")
    args, arguments = parser.parse_known_args()
    sys.argv = ["daphne", *arguments]
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        if args.asyncio:
            runpy.run_module("daphne", run_name="__main__")
        else:
            from teleconsult import daphne_main

            daphne_main.main()
    except SystemExit:
        pass
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
