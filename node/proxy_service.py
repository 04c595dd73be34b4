"""The proxy service: a long-running process beside a validator node that does proxy work.

``dmchain proxy run --home NODE_HOME`` runs :func:`run_proxy_service`: it
loads the node's keys, connects to the node's own HTTP API and, every poll
interval, calls each registered handler (:data:`node.proxy_handlers.PROXY_HANDLERS`)
with one :class:`ProxyContext`. It is a separate process from the node, so a
proxy can be stopped (or crash) without stopping consensus.

A handler is any object with a ``name`` and ``process_poll(ctx) -> int``
(the number of work items it completed in this poll). A handler that raises
is logged and polled again next time; it never stops the service or the
other handlers. Handlers keep their own files under ``ctx.data_dir``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import umbral_pre

from ledger.tx import TxKind, compute_signed_tx
from node.client import ClientError, NodeClient

PROXY_DIR = "proxy"
DEFAULT_POLL_S = 0.5
NONCE_RESYNC_S = 20.0
_NONCE_CODES = frozenset({"bad_nonce", "replayed_nonce"})


@dataclass
class ProxyContext:
    """What a proxy handler may use: its node's client, the node's keys and a data directory.

    ``submit(kind, payload)`` signs with the node's account seed and manages
    the nonce (it resynchronises from the chain when the node refuses one).
    """

    client: NodeClient
    seed: bytes
    public_key: bytes
    umbral_secret: umbral_pre.SecretKey
    data_dir: Path
    chain_id: str
    log: logging.Logger
    fee: int = 0
    _nonce: int = field(default=-1, repr=False)
    _nonce_at: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _chain_nonce(self) -> int:
        return int(self.client.get_account(self.public_key)["nonce"])

    def submit(self, kind: TxKind, payload: list[Any]) -> bytes:
        """Sign ``payload`` as a ``kind`` transaction of this node's account and submit it.

        Returns the transaction hash. Raises :class:`node.client.ClientError`
        if the node refuses it for any reason other than a stale nonce (which
        is retried once with the chain's nonce).
        """
        with self._lock:
            now = time.monotonic()
            chain_nonce = self._chain_nonce()
            stale = now - self._nonce_at > NONCE_RESYNC_S
            if self._nonce < chain_nonce or stale:
                self._nonce = max(chain_nonce, self._nonce if not stale else chain_nonce)
            for attempt in range(2):
                raw = compute_signed_tx(
                    self.seed, self.chain_id, kind, self._nonce, payload, fee=self.fee
                )
                try:
                    tx_hash = self.client.submit(raw)
                except ClientError as exc:
                    if exc.code in _NONCE_CODES and attempt == 0:
                        self._nonce = self._chain_nonce()
                        continue
                    raise
                self._nonce += 1
                self._nonce_at = now
                return tx_hash
            raise ClientError("bad_nonce", "could not find a usable nonce")


class ProxyHandler(Protocol):
    """One kind of proxy work, polled by the service."""

    name: str

    def process_poll(self, ctx: ProxyContext) -> int:
        """Do the work that is due now; return how many work items were completed."""
        ...


HandlerFactory = Callable[[ProxyContext], ProxyHandler]


def process_poll_round(ctx: ProxyContext, handlers: list[ProxyHandler]) -> int:
    """Poll every handler once; a failing handler is logged, never fatal. Returns items done."""
    done = 0
    for handler in handlers:
        try:
            done += int(handler.process_poll(ctx))
        except ClientError as exc:
            ctx.log.warning("event=proxy_poll_failed handler=%s error=%s", handler.name, exc)
        except Exception as exc:  # one handler's bug must not stop the others
            ctx.log.exception(
                "event=proxy_handler_error handler=%s error=%s: %s",
                handler.name,
                type(exc).__name__,
                exc,
            )
    return done


def build_handlers(ctx: ProxyContext, factories: list[HandlerFactory]) -> list[ProxyHandler]:
    """Instantiate the handlers; a factory that fails is logged and skipped."""
    handlers: list[ProxyHandler] = []
    for factory in factories:
        try:
            handlers.append(factory(ctx))
        except Exception as exc:  # a broken handler must not stop the others
            ctx.log.exception("event=proxy_handler_init_failed error=%s", exc)
    return handlers


def run_proxy_service(
    ctx: ProxyContext,
    factories: list[HandlerFactory],
    *,
    poll_s: float = DEFAULT_POLL_S,
    max_polls: int | None = None,
) -> int:
    """Poll the handlers until SIGTERM/SIGINT (or ``max_polls`` rounds); returns items done."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        ctx.log.info("event=proxy_stopping signal=%s", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    ctx.data_dir.mkdir(parents=True, exist_ok=True)
    handlers = build_handlers(ctx, factories)
    ctx.log.info(
        "event=proxy_started proxy=%s handlers=%s",
        ctx.public_key.hex(),
        ",".join(h.name for h in handlers) or "-",
    )
    total = 0
    polls = 0
    while not stop.is_set():
        total += process_poll_round(ctx, handlers)
        polls += 1
        if max_polls is not None and polls >= max_polls:
            break
        stop.wait(poll_s)
    ctx.log.info("event=proxy_stopped items=%d", total)
    return total
