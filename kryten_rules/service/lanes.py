"""Admission for replies: a bounded lane per kind of work.

A reply that needs the model can take seconds; a fixed reply (``reply:``, or
a shadow rule, which never calls the model) takes microseconds. In one queue
the fast ones would wait behind the slow ones, so each kind has its own
lane, with its own limit on replies in progress.

Admission is decided *before* the engine commits a decision: the bot asks
:meth:`Lane.has_room` first, and only a decision that is admitted spends its
rule's cooldown and budget. One that is not is logged as ``overloaded`` with
its state untouched, so a burst never silently eats the budget of replies
that were never attempted. That is the backpressure: the work in progress is
bounded, and what does not fit is refused up front, visibly.
"""

from __future__ import annotations

import asyncio


class Lane:
    """At most ``limit`` replies admitted at once, ``concurrency`` of them working."""

    def __init__(self, name: str, *, limit: int, concurrency: int) -> None:
        if limit < 1 or concurrency < 1:
            raise ValueError("a lane needs a limit and a concurrency of at least 1")
        self.name = name
        self.limit = limit
        self.slot = asyncio.Semaphore(concurrency)  # held while a reply is prepared
        self.admitted = 0  # admitted and not yet finished

    def has_room(self) -> bool:
        return self.admitted < self.limit

    def admit(self) -> None:
        """Count one reply in; pair with :meth:`release` (in a ``finally``)."""
        self.admitted += 1

    def release(self) -> None:
        self.admitted -= 1


__all__ = ["Lane"]
