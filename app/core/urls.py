"""Addresses the API gives out (`Link`, `Location`), built so that no response depends on a
request header a cache does not key on.

With `PUBLIC_BASE_URL` set, every absolute address starts with it. Without it, an address is
built from the request's `Host` / `X-Forwarded-*` only when the request comes from a trusted
proxy or from this machine, and such a response says `Vary` on those headers (the response
cache never stores a response that varies); from anywhere else addresses are relative
(RFC 8288 and RFC 9110 allow relative `Link` and `Location`), the same for every reader.

Query strings are canonical: only the parameters the route declares, sorted by name (the
values of a repeated parameter keep their order). The response cache keys on the same form,
so an unknown parameter can neither make a new cache entry nor be echoed into a stored link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import ip_address
from urllib.parse import parse_qsl, quote, urlencode

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request

from app.core.config import Settings, app_settings

VARY_FORWARDED = "Host, X-Forwarded-Host, X-Forwarded-Proto"
# A host name or address with an optional port: nothing that could carry a path or markup.
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$")
_names: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def declared_query(route: APIRoute) -> frozenset[str]:
    """The query parameters `route` reads, its dependencies' included."""
    found = _names.get(id(route))
    if found is None:
        found = _names[id(route)] = frozenset(_query_names(route.dependant))
    return found


def canonical_query(pairs: Iterable[tuple[str, str]], names: frozenset[str]) -> str:
    kept = sorted(((k, v) for k, v in pairs if k in names), key=lambda pair: pair[0])
    return urlencode(kept)


def canonical_query_string(query_string: bytes, names: frozenset[str]) -> str:
    return canonical_query(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True), names)


def request_query(request: Request) -> list[tuple[str, str]]:
    """The request's declared query parameters, canonical order (all of them off a route)."""
    route = request.scope.get("route")
    pairs = request.query_params.multi_items()
    if not isinstance(route, APIRoute):
        return sorted(pairs, key=lambda pair: pair[0])
    names = declared_query(route)
    return sorted(((k, v) for k, v in pairs if k in names), key=lambda pair: pair[0])


def _peer_is_trusted(request: Request) -> bool:
    peer = request.client.host if request.client else ""
    trusted = app_settings(request).trusted_proxies
    if peer in trusted or "*" in trusted:
        return True
    try:
        return ip_address(peer).is_loopback
    except ValueError:
        return False


def base(request: Request) -> tuple[str, bool]:
    """(scheme://host[/prefix] or "" for relative addresses, whether it came from the
    request's headers, so that the response must say `Vary: VARY_FORWARDED`)."""
    configured = app_settings(request).public_base_url
    if configured:
        return configured, False
    if not _peer_is_trusted(request):
        return "", False
    headers = request.headers
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    if proto not in ("http", "https"):
        proto = request.url.scheme
    host = headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host", "")
    if not _HOST.match(host):
        return "", False
    return f"{proto}://{host}", True


def address(request: Request, path: str, query: Iterable[tuple[str, str]] = ()) -> tuple[str, bool]:
    """An address on this API for a response to `request` (see `base`)."""
    root, varies = base(request)
    encoded = urlencode(list(query), safe=",")
    return f"{root}{path}{'?' + encoded if encoded else ''}", varies


def article_url(settings: Settings, *, article_id: int, slug: str, number: int) -> str:
    """Where readers read an article (the website, not this API), from ARTICLE_URL_TEMPLATE."""
    return settings.article_url_template.format(
        site_url=settings.site_url, slug=quote(slug, safe=""), id=article_id, number=number
    )
