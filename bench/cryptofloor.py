"""The Ed25519 verification floor: microseconds per PyNaCl verify on this machine.

One signature check per transaction per verifying node is the least work the
node can do, so CPU per transaction per node is judged against this figure,
measured in the same run as the load.
"""

from __future__ import annotations

import time

from nacl.signing import SigningKey

MAX_MESSAGES = 100_000


def compute_verify_floor_us(count: int = 2_000, size: int = 200) -> float:
    """Return the mean CPU microseconds of one ``VerifyKey.verify`` over ``count`` messages.

    CPU time of this thread, not wall time, so that other load on the machine
    does not inflate the floor (node CPU is also read as CPU time).

    Signs ``count`` distinct ``size``-byte messages first (not timed), then
    times verifying all of them; each verify must succeed.
    """
    if not 1 <= count <= MAX_MESSAGES or size < 1:
        raise ValueError(f"count must be in [1, {MAX_MESSAGES}] and size positive")
    key = SigningKey(bytes(range(32)))
    verify_key = key.verify_key
    messages = [(i.to_bytes(8, "big") * (size // 8 + 1))[:size] for i in range(count)]
    signed = [key.sign(m) for m in messages]
    started = time.thread_time_ns()
    for item in signed:
        verify_key.verify(item)
    return (time.thread_time_ns() - started) / 1000 / count
