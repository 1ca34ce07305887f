"""Helpers for the platform tests: running coroutine tests independently of the main thread's state."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def run_in_own_loop(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a fresh event loop in a thread of its own.

    Why not pytest-asyncio: once a browser test has run, the session-scoped Playwright browser keeps an
    event loop running in the main thread, and no other loop can be started there for the rest of the
    session. A thread of its own is independent of whatever ran before.
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        async def main() -> T:
            return await factory()

        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, name="test-event-loop")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def in_own_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Decorator for coroutine tests: runs them with run_in_own_loop (fixtures are passed as usual)."""

    @functools.wraps(test)
    def wrapper(*args: object, **kwargs: object) -> None:
        run_in_own_loop(lambda: test(*args, **kwargs))

    return wrapper
