from __future__ import annotations

from ipaddress import ip_address

from starlette.requests import Request

from app.core.config import app_settings


def client_ip(request: Request) -> str:
    """The client's address; X-Forwarded-For is believed only from configured proxies."""
    peer = request.client.host if request.client else "unknown"
    trusted = app_settings(request).trusted_proxies
    if peer in trusted or "*" in trusted:
        forwarded = request.headers.get("x-forwarded-for", "")
        # The right-most address not set by one of our proxies is the real client.
        for candidate in reversed([p.strip() for p in forwarded.split(",") if p.strip()]):
            if candidate in trusted:
                continue
            try:
                return str(ip_address(candidate))
            except ValueError:
                break
    return peer
