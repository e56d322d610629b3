"""S3 storage against a real S3-compatible server: moto's, started once per test process,
so requests, signatures, headers and bulk deletes all go over HTTP as they would to a bucket."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
from pydantic import ValidationError

from app.core.config import Settings
from app.media.s3 import S3Storage
from app.media.storage import IMMUTABLE, create_storage, new_folder
from tests.support import BUCKET, S3Server, free_port, moto_s3, s3_settings


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    # Session scope is per xdist worker: each worker has its own server on its own port.
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
async def storage(s3_server: S3Server) -> AsyncIterator[S3Storage]:
    made = S3Storage.from_settings(s3_settings(s3_server))
    yield made
    await made.aclose()


def fresh_key(name: str = "harbour-640w.webp") -> str:
    return f"{new_folder(2026, 12)}/{name}"


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(url)


class TestObjects:
    async def test_read_returns_the_bytes_put(self, storage: S3Storage) -> None:
        key, data = fresh_key(), secrets.token_bytes(3000)
        await storage.put(key, data, "image/webp")
        assert await storage.read(key) == data

    async def test_object_is_served_at_its_url_as_immutable(self, storage: S3Storage) -> None:
        key, data = fresh_key(), b"RIFF....WEBPVP8 "
        await storage.put(key, data, "image/webp")
        response = await fetch(storage.url(key))
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "image/webp"
        assert response.headers["cache-control"] == IMMUTABLE

    async def test_missing_key_reads_as_none(self, storage: S3Storage) -> None:
        assert await storage.read(fresh_key()) is None

    async def test_delete_removes_many_keys_and_ignores_missing_ones(
        self, storage: S3Storage
    ) -> None:
        folder = new_folder(2026, 12)
        kept = [f"{folder}/a-320w.jpg", f"{folder}/a-640w.jpg"]
        for key in kept:
            await storage.put(key, b"jpeg", "image/jpeg")
        await storage.delete([*kept, f"{folder}/never-stored.jpg"])
        for key in kept:
            assert await storage.read(key) is None
            # S3 answers 403 rather than 404 to readers who may not list the bucket.
            assert (await fetch(storage.url(key))).status_code in (403, 404)

    async def test_delete_of_nothing_is_a_no_op(self, storage: S3Storage) -> None:
        await storage.delete([])


class TestAddresses:
    async def test_prefix_goes_before_every_key(self, s3_server: S3Server) -> None:
        prefixed = S3Storage.from_settings(s3_settings(s3_server, media_s3_prefix="/site/media/"))
        plain = S3Storage.from_settings(s3_settings(s3_server))
        key = fresh_key()
        await prefixed.put(key, b"png", "image/png")
        assert prefixed.url(key) == f"{s3_server.endpoint}/{s3_server.bucket}/site/media/{key}"
        assert await plain.read(f"site/media/{key}") == b"png"
        assert await plain.read(key) is None
        assert (await fetch(prefixed.url(key))).content == b"png"

    def test_url_is_under_media_base_url(self, s3_server: S3Server) -> None:
        settings = s3_settings(
            s3_server, media_base_url="https://cdn.news.example/", media_s3_prefix="media"
        )
        url = S3Storage.from_settings(settings).url("2026/12/ab/x.webp")
        assert url == "https://cdn.news.example/media/2026/12/ab/x.webp"

    def test_url_without_endpoint_is_the_aws_bucket(self) -> None:
        settings = Settings(
            media_storage="s3", media_s3_bucket="news-media", media_s3_region="eu-west-1"
        )
        url = S3Storage.from_settings(settings).url("2026/12/ab/x.webp")
        assert url == "https://news-media.s3.eu-west-1.amazonaws.com/2026/12/ab/x.webp"

    @pytest.mark.parametrize("key", ["../x", "/abs", "a/../b", "a//b", ""])
    async def test_bad_key_is_refused_before_any_request(self, key: str) -> None:
        # Nothing listens on this port: a request would fail (after retries), not ValueError.
        unreachable = S3Server(f"http://127.0.0.1:{free_port()}", BUCKET)
        storage = S3Storage.from_settings(s3_settings(unreachable))
        with anyio.fail_after(2):
            for call in (
                storage.put(key, b"x", "image/png"),
                storage.read(key),
                storage.delete([fresh_key(), key]),
            ):
                with pytest.raises(ValueError, match="not a storage key"):
                    await call
        with pytest.raises(ValueError, match="not a storage key"):
            storage.url(key)

    def test_bad_prefix_is_refused(self, s3_server: S3Server) -> None:
        with pytest.raises(ValueError, match="not a storage key"):
            S3Storage.from_settings(s3_settings(s3_server, media_s3_prefix="../media"))


class TestSettings:
    def test_create_storage_picks_s3(self, s3_server: S3Server) -> None:
        assert isinstance(create_storage(s3_settings(s3_server)), S3Storage)

    def test_s3_needs_a_bucket(self) -> None:
        with pytest.raises(ValidationError, match="MEDIA_S3_BUCKET"):
            Settings(media_storage="s3")
