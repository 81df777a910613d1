"""Ctrl-C, SIGTERM and a part's time limit (``--stop-after``) as one clean ``KeyboardInterrupt``, raised only where
Python can unwind (the time limit only between trials).

A long command is stopped by an interrupt at any moment, and the sweep's store keeps every finished trial;
this module makes sure the interrupt always arrives as an exception the command line can report, never as a
C++ ``terminate`` from inside an extension module."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_deadline: float | None = None


class PartEnded(KeyboardInterrupt):
    """The time a part was given (``--stop-after``) has passed: raised at a trial boundary, so no trial is lost."""


def stop_after(seconds: float | None) -> None:
    """End this process's work as a part: the first trial boundary after ``seconds`` from now raises :class:`PartEnded`
    (None: no limit). Process-wide, like the signals above: one command runs one part."""
    global _deadline
    _deadline = None if seconds is None else time.monotonic() + seconds


def at_boundary() -> None:
    """Called before new trials start: raise :class:`PartEnded` once the part's time has passed."""
    if _deadline is not None and time.monotonic() >= _deadline:
        raise PartEnded


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt`` (like Ctrl-C) inside the block; the previous handler returns after it.

    On leaving, a ``KeyboardInterrupt`` caught inside the block is also forgotten, so that the process exits
    with the status the caller returns: CPython marks an interrupt as unhandled when it escapes code run by
    ``exec`` of a string (as ``dataclasses`` does while torch imports lazily) even if an outer ``except``
    catches it, and then kills the process with SIGINT at exit. Any later ``exec`` of a string clears that mark."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        exec("None")


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back for the block and deliver them right after it.

    For calls into extension code that cannot unwind a Python exception: the first optimizer a process
    builds imports ``torch._dynamo`` and Triton, whose nanobind bindings abort the whole process if an
    interrupt's ``KeyboardInterrupt`` is raised inside them. Python runs signal handlers in the main thread
    only, so elsewhere the block needs no protection."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: caught.append((signum, frame))) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum, frame in caught[:1]:
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
