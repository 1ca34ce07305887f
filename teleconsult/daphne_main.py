"""daphne on uvloop, the way every daphne of the platform starts: `python -m teleconsult.daphne_main <daphne args>`.

daphne makes its event loop when `daphne.server` is first imported (`asyncio.new_event_loop()`, handed to Twisted's
asyncio reactor), so the loop policy has to be uvloop's before that import; `python -m daphne` offers no way to
say so. uvloop's loop costs less per websocket frame than asyncio's own (docs/decisions.md). The arguments are
daphne's, unchanged.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop


def install_loop_policy() -> None:
    """uvloop's policy for every loop made from now on; refused once daphne's loop exists (it would stay asyncio's)."""
    if "daphne.server" in sys.modules or "twisted.internet.reactor" in sys.modules:
        raise RuntimeError("daphne's event loop already exists: set the loop policy before importing daphne.server")
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def daphne_loop() -> asyncio.AbstractEventLoop:
    """The loop daphne and Twisted run on (imports daphne.server, which makes it on first import)."""
    import daphne.server

    loop: asyncio.AbstractEventLoop = daphne.server.twisted_loop
    return loop


def main() -> None:
    install_loop_policy()
    loop = daphne_loop()
    if not isinstance(loop, uvloop.Loop):
        # Something made the loop without the policy (another import path, a changed daphne): say so and stop
        # rather than serve on a loop nobody measured.
        sys.exit(f"daphne's event loop is {type(loop).__module__}.{type(loop).__qualname__}, not uvloop's.")
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
