"""Where a webhook may point: public addresses only (no requests into our own network on an
admin's say-so, nor a cloud metadata service), checked at registration and again at every
delivery, which then connects to the very address that was checked (DNS rebinding)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address

import httpx

IPAddress = IPv4Address | IPv6Address


class TargetRefused(Exception):
    """The URL's host cannot be resolved, or resolves to an address we do not call."""


def is_public(address: IPAddress) -> bool:
    if isinstance(address, IPv6Address):
        # An IPv4 address wrapped in IPv6 is judged as the IPv4 address it carries.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_public(embedded)
        if address.teredo is not None:
            return all(is_public(part) for part in address.teredo)
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (getaddrinfo blocks, so it runs in a thread)."""
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"The host {host} cannot be resolved.") from exc
    addresses = list(dict.fromkeys(ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"The host {host} cannot be resolved.")
    return addresses


@dataclass(frozen=True, slots=True)
class Target:
    """A request aimed at one checked address, still speaking to the host by name."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


async def check(url: str, *, allow_private: bool) -> Target:
    """Resolve the URL's host; refuse it unless every address is public (or private
    targets are allowed); aim at the first address."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise TargetRefused("Only absolute http(s) URLs can receive webhooks.")
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await resolve(host, port)
    if not allow_private:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise TargetRefused(
                f"The host {host} resolves to {refused[0]}, a private, loopback, link-local, "
                "multicast, reserved or unspecified address."
            )
    pinned = parsed.copy_with(host=str(addresses[0]))
    headers = {"Host": parsed.netloc.decode("ascii")}
    # TLS still names (and verifies) the host, though the socket goes to the checked address.
    extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
    return Target(pinned, headers, extensions)
