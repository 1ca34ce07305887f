"""daphne for the benchmarks, optionally on uvloop and under cProfile counting CPU time, not wall time.

Wall-clock profiles of a server on a shared machine blame whatever call was running when the scheduler
gave the core to another process (socket sends, epoll); CPU time of the event loop's thread shows where
the server itself spends. uvloop is not a dependency of the project: `--uvloop` needs it installed by hand
and exists to measure it (docs/benchmarks.md).
Usage: python -m bench._daphne [--profile STATS_PATH] [--uvloop] <daphne arguments>
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import runpy
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--profile", metavar="STATS_PATH")
    parser.add_argument("--uvloop", action="store_true")
    args, arguments = parser.parse_known_args()
    if args.uvloop:
        # daphne creates its loop when daphne.server is first imported: the policy must be set before.
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    sys.argv = ["daphne", *arguments]
    profiler = cProfile.Profile(time.thread_time) if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        runpy.run_module("daphne", run_name="__main__")
    except SystemExit:
        pass
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
