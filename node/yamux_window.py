"""Yamux receive-window credit returned in batches, as go-yamux does.

py-libp2p's yamux stream sends a WINDOW_UPDATE frame after (almost) every
read: with the ``PY_YAMUX_RELEASE_ON_READ`` default one per read, and one
every other read with it off (its "partial slack" branch). Each update is a
Noise-encrypted write on the reader's side and a decrypt + parse on the
writer's side, so on a node exchanging many small frames it doubled the
number of messages on every connection: the benchmark's profile put 16-18 %
of a busy PBFT replica's CPU in ``send_window_update``.

:func:`install_batched_window_updates` replaces that policy with the one of
go-yamux: consumed bytes are counted and returned to the sender in one update
once they reach half the receive window. The sender always holds at least
half a window of credit, so it never stalls on a reader that keeps reading.
"""

from __future__ import annotations

from typing import Any

from libp2p.stream_muxer.yamux import yamux

_INSTALLED_ATTR = "_dmchain_batched_window_updates"


def compute_release(pending: int, bytes_read: int, window: int) -> tuple[int, int]:
    """Return ``(increment_to_send, pending_after)`` for one read of ``bytes_read``.

    Credit accumulates until it reaches half of ``window``; then all of it is
    released in one increment. Guarantees ``increment + pending_after ==
    pending + bytes_read`` (no credit is lost or invented).
    """
    total = pending + max(bytes_read, 0)
    if total >= max(window // 2, 1):
        return total, 0
    return 0, total


async def _release_consumed(self: Any, *, bytes_read: int = 0) -> None:
    """Replacement for ``YamuxStream._auto_tune_and_send_window_update``."""
    async with self.window_lock:
        increment, self._pending_recv_release = compute_release(
            self._pending_recv_release, bytes_read, self.target_recv_window
        )
        self.recv_window += increment
    if increment > 0:
        # Outside window_lock: inbound WINDOW_UPDATE handling takes that lock.
        await self.send_window_update(increment, skip_lock=True)


def install_batched_window_updates() -> None:
    """Make every yamux stream of this process return credit in half-window batches.

    Idempotent. Applies to streams created afterwards and to existing ones
    (the method is looked up on the class).
    """
    stream_class = yamux.YamuxStream
    if getattr(stream_class, _INSTALLED_ATTR, False):
        return
    stream_class._auto_tune_and_send_window_update = _release_consumed  # type: ignore[method-assign]
    setattr(stream_class, _INSTALLED_ATTR, True)
