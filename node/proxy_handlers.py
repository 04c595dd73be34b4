"""The registry of proxy handlers run by ``dmchain proxy run``.

Each entry is a factory ``(ProxyContext) -> ProxyHandler``. A feature adds
its handler by appending one line here; the service polls them in order.
"""

from __future__ import annotations

from node.proxy_audit import AuditProxyHandler
from node.proxy_data import create_data_handler
from node.proxy_service import HandlerFactory

PROXY_HANDLERS: list[HandlerFactory] = [
    # -- data access --
    create_data_handler,
    AuditProxyHandler,  # KYC audit (node/proxy_audit.py)
]
