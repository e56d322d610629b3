"""A WordPress export's attachments: where their files come from, and how the image URLs of
imported bodies find them.

A file is read from the old site's uploads folder (`--uploads DIR`, never outside it) or
downloaded from its URL (`--fetch-attachments`), through the webhooks' address guard, so an
export cannot make the importer call into our own network, within MEDIA_MAX_BYTES and
MEDIA_BODY_TIMEOUT_SECONDS. What becomes of the file is the media library's business
(`app.media.service.create`); the importer's service decides when to call it.

A body names an attachment by WordPress' `wp-image-N` class on an `<img>`, or by the file's
URL, often one of the sizes WordPress made of it (`harbour-300x200.jpg`, `harbour-scaled.jpg`).
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urljoin, urlsplit

import anyio
import httpx

from app.core.config import Settings
from app.importer import wxr
from app.media import views
from app.media.service import Library
from app.media.storage import files_url
from app.webhooks import targets

UPLOADS = "/wp-content/uploads/"
MAX_REDIRECTS = 5
WAIT_SECONDS = 30.0  # the most a server may stay silent; MEDIA_BODY_TIMEOUT_SECONDS bounds all


class SourceRefused(Exception):
    """The attachment's file cannot be had: missing, outside the folder, refused, too big."""


def relative_path(item: wxr.Item) -> str:
    """The file's path under wp-content/uploads: its `_wp_attached_file`, else read from its
    URL."""
    attached = item.meta.get("_wp_attached_file", "").strip()
    if attached:
        return attached
    path = unquote(urlsplit(item.attachment_url).path)
    _, found, rest = path.partition(UPLOADS)
    return rest if found else ""


class FileSource(Protocol):
    async def read(self, item: wxr.Item) -> bytes:
        """The attachment's file; raises SourceRefused saying why not."""


class UploadsFolder:
    """The old site's `wp-content/uploads`, copied to this machine."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root.resolve()
        self.max_bytes = max_bytes

    async def read(self, item: wxr.Item) -> bytes:
        relative = relative_path(item)
        if not relative:
            raise SourceRefused("it names no file (_wp_attached_file)")
        parts = PurePosixPath(relative).parts
        if PurePosixPath(relative).is_absolute() or ".." in parts or "\\" in relative:
            raise SourceRefused(f"its file {relative!r} would be outside the uploads folder")
        # Resolved, so that a symbolic link cannot lead out of the folder either.
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root):
            raise SourceRefused(f"its file {relative!r} leads outside the uploads folder")
        return await anyio.to_thread.run_sync(self._read, path, relative)

    def _read(self, path: Path, relative: str) -> bytes:
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise SourceRefused(f"{relative!r} in the uploads folder is not a file")
            if size > self.max_bytes:
                raise SourceRefused(
                    f"its file {relative!r} has {size} bytes, more than {self.max_bytes} "
                    "(MEDIA_MAX_BYTES)"
                )
            return path.read_bytes()
        except FileNotFoundError:
            raise SourceRefused(f"its file {relative!r} is not in the uploads folder") from None
        except OSError as exc:
            raise SourceRefused(f"its file {relative!r} cannot be read ({exc})") from None


class Either:
    """The uploads folder, and the URL for what the folder lacks."""

    def __init__(self, first: FileSource, then: FileSource) -> None:
        self.first, self.then = first, then

    async def read(self, item: wxr.Item) -> bytes:
        try:
            return await self.first.read(item)
        except SourceRefused as first:
            try:
                return await self.then.read(item)
            except SourceRefused as then:
                raise SourceRefused(f"{first}; and {then}") from None


class Downloader:
    """Each file from its URL on the old site. Every address, redirects' included, is checked
    as a webhook's is (WEBHOOK_ALLOW_PRIVATE_TARGETS relaxes it, for an old site inside our
    own network)."""

    def __init__(self, settings: Settings) -> None:
        self.allow_private = settings.webhook_allow_private_targets
        self.max_bytes = settings.media_max_bytes
        self.deadline = settings.media_body_timeout_seconds
        self.user_agent = f"{settings.site_name}-Importer"
        self.http = httpx.AsyncClient(
            timeout=min(WAIT_SECONDS, self.deadline),
            # Redirects are followed here, each to a checked address; no proxy from the
            # environment, which would connect to an address we never checked.
            follow_redirects=False,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def read(self, item: wxr.Item) -> bytes:
        if not item.attachment_url:
            raise SourceRefused("it has no <wp:attachment_url>")
        try:
            async with asyncio.timeout(self.deadline):
                return await self._download(item.attachment_url)
        except TimeoutError:
            raise SourceRefused(
                f"{item.attachment_url} did not arrive within {self.deadline:g} s "
                "(MEDIA_BODY_TIMEOUT_SECONDS)"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise SourceRefused(f"{item.attachment_url}: {type(exc).__name__}: {exc}") from None

    async def _download(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            if urlsplit(url).scheme not in ("http", "https"):
                raise SourceRefused(f"{url} is not an http(s) URL")
            try:
                target = await targets.check(url, allow_private=self.allow_private)
            except targets.TargetRefused as exc:
                raise SourceRefused(f"{url}: {exc}") from None
            request = self.http.build_request(
                "GET",
                target.url,
                headers={**target.headers, "User-Agent": self.user_agent},
                extensions=target.extensions,
            )
            response = await self.http.send(request, stream=True)
            try:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise SourceRefused(f"{url} answered HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_big(url)
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > self.max_bytes:
                        raise self._too_big(url)
                return bytes(data)
            finally:
                await response.aclose()
        raise SourceRefused(f"{url}: more than {MAX_REDIRECTS} redirects")

    def _too_big(self, url: str) -> SourceRefused:
        return SourceRefused(f"{url} is larger than {self.max_bytes} bytes (MEDIA_MAX_BYTES)")


@dataclass(frozen=True, slots=True)
class Sources:
    """What the importer needs for attachments: the library, and where files come from
    (None: attachments already in the library are updated, others are skipped)."""

    lib: Library
    files: FileSource | None = None


# --- bodies -------------------------------------------------------------------------------

_TAG = re.compile(r"<(img|a)\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>"']+))?""")
_WP_IMAGE = re.compile(r"\bwp-image-(\d+)\b")
# The sizes WordPress makes of an upload: `-300x200`, and since 5.3 `-scaled` (a big original
# scaled down) and `-rotated`.
_SIZE_SUFFIX = re.compile(r"-(?:(\d+)x(\d+)|scaled|rotated)(\.[A-Za-z0-9]+)$")
_WIDTH = re.compile(r"^w(\d+)$")


@dataclass
class UrlIndex:
    """Attachments by their file's address: host (without `www.`, any scheme) and path."""

    site_host: str = ""
    found: dict[tuple[str, str], int] = field(default_factory=dict)
    ids: set[int] = field(default_factory=set)  # every attachment of the export

    @staticmethod
    def _key(url: str, default_host: str) -> tuple[str, str] | None:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("", "http", "https") or UPLOADS not in parts.path:
            return None
        host = (parts.hostname or default_host).removeprefix("www.")
        return host, unquote(parts.path)

    def add(self, item: wxr.Item) -> None:
        self.ids.add(item.post_id)
        key = self._key(item.attachment_url, self.site_host)
        if key is None:
            return
        self.found.setdefault(key, item.post_id)
        # The attachment's own URL may be the `-scaled` size; bodies name the original too.
        host, path = key
        self.found.setdefault((host, _SIZE_SUFFIX.sub(r"\3", path)), item.post_id)

    def find(self, url: str) -> tuple[int, int | None] | None:
        """The attachment a URL is a file of, and the width its size suffix says."""
        key = self._key(url, self.site_host)
        if key is None:
            return None
        if key in self.found:
            return self.found[key], None
        host, path = key
        suffix = _SIZE_SUFFIX.search(path)
        if suffix is None:
            return None
        base = (host, path[: suffix.start()] + suffix.group(3))
        if base not in self.found:
            return None
        return self.found[base], int(suffix.group(1)) if suffix.group(1) else None


def _attributes(match: re.Match[str]) -> dict[str, str]:
    inside = match.group(0)[1 + len(match.group(1)) : -1].rstrip("/")
    found: dict[str, str] = {}
    for name, value in _ATTRIBUTE.findall(inside):
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        found.setdefault(name.lower(), html.unescape(value))
    return found


def _named(name: str, attributes: Mapping[str, str]) -> str:
    pairs = "".join(f' {key}="{html.escape(value)}"' for key, value in attributes.items())
    return f"<{name}{pairs}>"


def _target(
    name: str, attributes: Mapping[str, str], index: UrlIndex
) -> tuple[int, int | None] | None:
    if name == "a":
        return index.find(attributes.get("href", ""))
    by_url = index.find(attributes.get("src", ""))
    named = _WP_IMAGE.search(attributes.get("class", ""))
    if named is not None and int(named.group(1)) in index.ids:
        return int(named.group(1)), by_url[1] if by_url else None
    return by_url


def referenced(body: str, index: UrlIndex) -> list[int]:
    """The attachments a body shows or links to, in order."""
    found: list[int] = []
    for match in _TAG.finditer(body):
        target = _target(match.group(1).lower(), _attributes(match), index)
        if target is not None:
            found.append(target[0])
    return list(dict.fromkeys(found))


def rendition(sizes: Mapping[str, dict[str, object]], width: int | None) -> str:
    """The smallest of the original format's renditions at least `width` wide (the full
    image for no width, or when none is)."""
    if width is None:
        return "full"
    widths = sorted(
        (int(str(size["width"])), name)
        for name, size in sizes.items()
        if name == "full" or _WIDTH.match(name)
    )
    return next((name for w, name in widths if w >= width), "full")


def rewrite(
    body: str,
    index: UrlIndex,
    images: Mapping[int, views.MediaRow],
    settings: Settings,
    *,
    linked: Callable[[views.MediaRow], bool],
) -> tuple[str, list[int]]:
    """The body with the images and links of imported attachments pointed at the library's
    files: `src` at the rendition nearest the size shown, a `srcset` of the renditions, and
    `data-media-id` where `linked` allows it. Returns it with the ids `linked` refused."""
    unlinked: list[int] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        attributes = _attributes(match)
        target = _target(name, attributes, index)
        row = images.get(target[0]) if target is not None else None
        if target is None or row is None:
            return match.group(0)
        if name == "a":
            attributes["href"] = files_url(settings, row.sizes["full"]["key"])
            return _named("a", attributes)
        shown = attributes.get("width", "")
        width = int(shown) if shown.isdigit() else target[1]
        attributes["src"] = files_url(settings, row.sizes[rendition(row.sizes, width)]["key"])
        # WordPress' own srcset names the old site's files; ours replaces it.
        attributes.pop("srcset", None)
        srcset = views.ref(row, settings).srcset
        if srcset:
            attributes["srcset"] = srcset
        if linked(row):
            attributes["data-media-id"] = str(row.id)
        else:
            unlinked.append(row.id)
        return _named("img", attributes)

    return _TAG.sub(replace, body), unlinked
