"""daphne on uvloop, the way every daphne of the platform starts: `python -m teleconsult.daphne_main <daphne args>`.

daphne makes its event loop when `daphne.server` is first imported (`asyncio.new_event_loop()`, handed to Twisted's
asyncio reactor), so the loop policy has to be uvloop's before that import; `python -m daphne` offers no way to
say so. uvloop's loop costs less per websocket frame than asyncio's own (docs/decisions.md). The arguments are
daphne's, unchanged. It also keeps autobahn from colouring debug log values nobody logs, for every frame
(`defer_autobahn_debug_values`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import uvloop

# autobahn's modules whose per-frame (and per-connection) debug lines pass highlighted values.
_AUTOBAHN_MODULES = ("autobahn.websocket.protocol", "autobahn.twisted.websocket")
_HIGHLIGHTERS = ("hltype", "hlval")


class _FormattedWhenLogged:
    """Stands for `function(*args)` in a log call's arguments and computes it only when the line is formatted."""

    __slots__ = ("args", "function")

    def __init__(self, function: Callable[..., str], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args

    def __format__(self, spec: str) -> str:
        return format(self.function(*self.args), spec)

    def __str__(self) -> str:
        return str(self.function(*self.args))

    def __repr__(self) -> str:
        return repr(self.function(*self.args))


class _Deferred:
    """A highlighter whose result is computed when formatted (`_FormattedWhenLogged`)."""

    def __init__(self, function: Callable[..., str]) -> None:
        self.function = function

    def __call__(self, *args: Any) -> _FormattedWhenLogged:
        return _FormattedWhenLogged(self.function, args)


def defer_autobahn_debug_values() -> None:
    """autobahn logs every websocket frame it receives and sends at debug level, passing the values already coloured
    for a terminal (`hltype`, `hlval`: click.style on each, about 3 µs a frame). txaio's logger drops a debug line
    when that level is off (always, in daphne) but Python has computed the arguments by then. In autobahn's two
    websocket modules those names are only ever log arguments: they become values computed when, and only when,
    a line is actually formatted — the same text then, nothing otherwise. docs/decisions.md."""
    import importlib

    for module_name in _AUTOBAHN_MODULES:
        module = importlib.import_module(module_name)
        for name in _HIGHLIGHTERS:
            current = getattr(module, name)
            if not isinstance(current, _Deferred):
                setattr(module, name, _Deferred(current))


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


def daphne_process(**kwargs: Any) -> Any:
    """daphne.testing's DaphneProcess (a daphne forked from a test or a benchmark, sharing its settings) on uvloop with
    autobahn's debug values deferred, as this launcher runs daphne. The arguments are DaphneProcess's."""
    from daphne.testing import DaphneProcess

    class UvloopDaphneProcess(DaphneProcess):
        def run(self) -> None:
            # In the child: DaphneProcess makes a new loop (and reactor) before serving, from this policy.
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
            defer_autobahn_debug_values()
            super().run()

    return UvloopDaphneProcess(**kwargs)


def command(*daphne_arguments: str) -> list[str]:
    """The command that starts daphne as the platform does (this module, on this interpreter), with daphne's own
    arguments: for the processes the tests and benchmarks start."""
    return [sys.executable, "-m", "teleconsult.daphne_main", *daphne_arguments]


def main() -> None:
    install_loop_policy()
    loop = daphne_loop()
    if not isinstance(loop, uvloop.Loop):
        # Something made the loop without the policy (another import path, a changed daphne): say so and stop
        # rather than serve on a loop nobody measured.
        sys.exit(f"daphne's event loop is {type(loop).__module__}.{type(loop).__qualname__}, not uvloop's.")
    defer_autobahn_debug_values()
    from daphne.cli import CommandLineInterface

    from teleconsult.daphne_server import DrainingServer

    cli = CommandLineInterface()
    cli.server_class = DrainingServer  # SIGTERM closes the websockets and drains them before exiting
    cli.run(sys.argv[1:])


if __name__ == "__main__":
    main()
