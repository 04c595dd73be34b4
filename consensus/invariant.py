"""Invariant checks that survive ``python -O``.

``assert`` statements are stripped under ``-O``; consensus and ledger code
states its invariants through :func:`require` instead, so a broken invariant
always stops the control path with a typed error.
"""

from __future__ import annotations


class InvariantError(RuntimeError):
    """Raised when an internal invariant does not hold (a bug, never bad input)."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`InvariantError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise InvariantError(message)
