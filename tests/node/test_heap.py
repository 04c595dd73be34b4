"""Returning free C heap pages to the operating system."""

from __future__ import annotations

import pytest

from node import heap


def _rss_anon_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not heap.is_trim_available(), reason="malloc_trim needs glibc")
def test_trim_returns_memory_freed_below_live_allocations() -> None:
    # 50 MB of 64 KB strings come from the heap (below glibc's mmap threshold);
    # later small allocations above them keep glibc from shrinking the heap top
    freed = [bytearray(64 * 1024) for _ in range(800)]
    for block in freed:
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    pinned = [bytearray(2048) for _ in range(1000)]
    del freed
    before = _rss_anon_mb()
    assert heap.process_trim_heap() is True
    after = _rss_anon_mb()
    assert before - after >= 30, (before, after)
    assert len(pinned) == 1000
