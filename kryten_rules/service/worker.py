"""Run a blocking function in a thread of its own, awaited from the event loop.

A reload builds a whole rule set (YAML, checks, RE2 compiles): seconds of CPU
for a large set. ``asyncio.to_thread`` would do it in the loop's default
executor, whose threads the interpreter joins on exit, so a SIGTERM during a
reload would wait for the build to finish. A daemon thread is not joined: the
service stops when asked, and a build nobody waits for any more is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _settle(fut: asyncio.Future[T], result: T | None, exc: BaseException | None) -> None:
    if fut.done():  # the awaiting task was cancelled (a stop): nobody wants the result
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)  # type: ignore[arg-type]


async def in_daemon_thread(fn: Callable[[], T], name: str) -> T:
    """``fn()`` in a new daemon thread; its result or its exception, here."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task, which decides
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: a stop
            loop.call_soon_threadsafe(_settle, fut, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await fut
