from __future__ import annotations

from ipaddress import ip_address

from starlette.requests import Request

from app.core.config import app_settings


def client_ip(request: Request) -> str:
    """The client's address; X-Forwarded-For is believed only from configured proxies."""
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for", "")
    return client_address(peer, forwarded, app_settings(request).trusted_proxies)


def client_address(peer: str, forwarded: str, trusted: list[str]) -> str:
    """The address of the client that reached `peer`: `forwarded` (X-Forwarded-For) is
    believed only from `trusted` proxies, and then its right-most address that is not one
    of them (the one our first proxy saw)."""
    if peer in trusted or "*" in trusted:
        for candidate in reversed([p.strip() for p in forwarded.split(",") if p.strip()]):
            if candidate in trusted:
                continue
            try:
                return str(ip_address(candidate))
            except ValueError:
                break
    return peer
