"""Supervised trio tasks: a crash is logged with its traceback and propagates.

trio already propagates an exception out of a nursery, but a task started by
a library (a stream handler, a notifee) can end silently, and a loop that is
meant to run forever can simply return. :func:`run_supervised` makes both
loud: every exception is logged with the task name and re-raised, and a
``forever`` task that returns raises :class:`TaskExitedError`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

logger = logging.getLogger("dmchain.tasks")


class TaskExitedError(RuntimeError):
    """A task that must run until cancelled returned on its own."""


async def run_supervised(
    name: str,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    forever: bool = False,
) -> None:
    """Await ``fn(*args)``; log and re-raise any exception it raises.

    Cancellation passes through untouched. With ``forever=True`` a normal
    return is an error: it is logged and raised as :class:`TaskExitedError`.
    """
    try:
        await fn(*args)
    except Exception:
        logger.exception("event=task_crashed task=%s", name)
        raise
    if forever:
        logger.error("event=task_exited task=%s", name)
        raise TaskExitedError(f"task {name} returned but must run until cancelled")


def start_supervised(
    nursery: trio.Nursery,
    name: str,
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
    forever: bool = False,
) -> None:
    """Start ``fn(*args)`` in ``nursery`` under :func:`run_supervised`."""
    nursery.start_soon(_supervised_entry, name, fn, args, forever, name=name)


async def _supervised_entry(
    name: str, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], forever: bool
) -> None:
    await run_supervised(name, fn, *args, forever=forever)
