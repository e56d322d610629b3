"""Where uploaded files and their renditions are kept: one small interface, two backends.

Keys are paths such as `2026/12/3f9a…/harbour-640w.webp`. A key is never reused for other
bytes (a changed crop gets a new key), so every stored file can be served as immutable.

- `LocalStorage` (MEDIA_STORAGE=local, the embedded default): files under MEDIA_ROOT, served
  by the app at `/media/{key}` (`app.media.router.files`).
- `S3Storage` (MEDIA_STORAGE=s3, in `app.media.s3`): an S3-compatible bucket, read by
  readers straight from the bucket or the CDN in front of it (MEDIA_BASE_URL).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import anyio

from app.core.config import Settings, server_address

# What a key may be: no "..", no leading slash, nothing a filesystem or a URL treats specially.
KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
IMMUTABLE = "public, max-age=31536000, immutable"


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`, readable at `url(key)` once this returns."""

    async def read(self, key: str) -> bytes | None:
        """The stored bytes, or None if nothing is stored under `key`."""

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove these keys; keys that are not stored are ignored."""

    def url(self, key: str) -> str:
        """The absolute address readers fetch `key` from."""

    async def aclose(self) -> None:
        """Release connections; the storage is not used afterwards."""


def check_key(key: str) -> str:
    if not KEY.match(key) or ".." in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


def new_folder(year: int, month: int) -> str:
    """A fresh folder for one upload's files: dated for people, random so nobody can list or
    guess the files of media that are not public yet."""
    return f"{year:04d}/{month:02d}/{secrets.token_hex(8)}"


def local_base_url(settings: Settings) -> str:
    if settings.media_base_url:
        return settings.media_base_url
    own = server_address(settings.host, settings.port)
    return f"{settings.public_base_url or own}/media"


def s3_base_url(settings: Settings) -> str:
    if settings.media_base_url:
        return settings.media_base_url
    if settings.media_s3_endpoint_url:
        return f"{settings.media_s3_endpoint_url}/{settings.media_s3_bucket}"
    return f"https://{settings.media_s3_bucket}.s3.{settings.media_s3_region}.amazonaws.com"


def files_url(settings: Settings, key: str) -> str:
    """Where readers fetch a stored key, from the settings alone: the same on every worker
    and instance, whatever the request, so responses that carry it can be cached. Each
    backend's `url` is this."""
    check_key(key)
    if settings.media_storage == "s3":
        prefix = settings.media_s3_prefix.strip("/")
        return f"{s3_base_url(settings)}/{prefix + '/' if prefix else ''}{key}"
    return f"{local_base_url(settings)}/{key}"


class LocalStorage:
    """Files on this machine's disk, written whole to a temporary name and renamed, so a
    reader never sees half a file."""

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await anyio.to_thread.run_sync(self._write, self.path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        partial.write_bytes(data)
        os.replace(partial, path)

    async def read(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            return None

    async def delete(self, keys: Sequence[str]) -> None:
        await anyio.to_thread.run_sync(self._remove, [self.path(k) for k in keys])

    def _remove(self, paths: list[Path]) -> None:
        folders = set()
        for path in paths:
            path.unlink(missing_ok=True)
            folders.add(path.parent)
        # Empty upload folders go too, up to (never including) the root.
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            while folder != self.root and folder.is_relative_to(self.root):
                try:
                    folder.rmdir()
                except OSError:
                    break
                folder = folder.parent

    def url(self, key: str) -> str:
        return f"{self.base_url}/{check_key(key)}"

    async def aclose(self) -> None:
        return None


def create_storage(settings: Settings) -> Storage:
    if settings.media_storage == "s3":
        # Imported here: app.media.s3 imports this module, and local storage never needs it.
        from app.media.s3 import S3Storage

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.media_root, local_base_url(settings))
