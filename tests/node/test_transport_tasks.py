"""Task supervision used by the transport: crashes and early exits are loud."""

from __future__ import annotations

import logging

import pytest
import trio

from node.tasks import TaskExitedError, run_supervised, start_supervised


async def test_crash_is_logged_with_traceback_and_propagates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="dmchain.tasks")

    async def broken() -> None:
        await trio.sleep(0)
        raise ValueError("bad state")

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            start_supervised(nursery, "worker", broken)
            await trio.sleep_forever()
    assert info.group_contains(ValueError, match="bad state")
    records = [r for r in caplog.records if "event=task_crashed task=worker" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info is not None


async def test_forever_task_that_returns_is_an_error() -> None:
    async def quits() -> None:
        await trio.sleep(0)

    with pytest.raises(TaskExitedError, match="loop"):
        await run_supervised("loop", quits, forever=True)
    await run_supervised("once", quits)  # a one-shot task may return


async def test_cancellation_passes_through_silently(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dmchain.tasks")
    async with trio.open_nursery() as nursery:
        start_supervised(nursery, "sleeper", trio.sleep_forever, forever=True)
        await trio.sleep(0)
        nursery.cancel_scope.cancel()
    assert not caplog.records
