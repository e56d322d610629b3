"""MEDIA_STORAGE=s3: uploads and renditions in an S3-compatible bucket (AWS, MinIO, R2, ...).

The client is obstore (Rust's object_store): natively async, so no thread pool, and small next
to boto3. Requests are path-style (`{endpoint}/{bucket}/{key}`), which every S3-compatible
server answers; readers fetch objects straight from the bucket or a CDN in front of it, never
through the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from obstore.store import S3Store

from app.core.config import Settings
from app.media.storage import IMMUTABLE, check_key, s3_base_url

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config


class S3Storage:
    def __init__(self, store: S3Store, prefix: str, base_url: str) -> None:
        self.store = store
        self.prefix = prefix
        self.base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        bucket = settings.media_s3_bucket
        if not bucket:
            raise ValueError("MEDIA_STORAGE=s3 needs MEDIA_S3_BUCKET")
        prefix = settings.media_s3_prefix.strip("/")
        if prefix:
            check_key(prefix)
        endpoint = settings.media_s3_endpoint_url
        config: S3Config = {"region": settings.media_s3_region}
        client: ClientConfig = {}
        if endpoint:
            config["endpoint"] = endpoint
            # MinIO or moto on a private network or localhost often has no TLS.
            client["allow_http"] = endpoint.startswith("http://")
        secret = settings.media_s3_secret_access_key
        if settings.media_s3_access_key_id and secret:
            config["access_key_id"] = settings.media_s3_access_key_id
            config["secret_access_key"] = secret.get_secret_value()
        # Otherwise obstore's own chain: AWS_* variables, web identity, ECS, instance metadata.
        store = S3Store(bucket, config=config, client_options=client)
        return cls(store, prefix, s3_base_url(settings))

    def object(self, key: str) -> str:
        """The object's name in the bucket: the key, after MEDIA_S3_PREFIX."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self.store.put_async(
            self.object(key),
            data,
            attributes={"Content-Type": content_type, "Cache-Control": IMMUTABLE},
            # The bytes are in memory already; one PUT leaves no orphaned parts if it fails.
            use_multipart=False,
        )

    async def read(self, key: str) -> bytes | None:
        try:
            result = await self.store.get_async(self.object(key))
        except FileNotFoundError:
            return None
        return bytes(await result.bytes_async())

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            # One DeleteObjects request per 1000 keys; S3 reports missing keys as deleted.
            await self.store.delete_async([self.object(k) for k in keys])

    def url(self, key: str) -> str:
        return f"{self.base_url}/{self.object(key)}"

    async def aclose(self) -> None:
        # obstore closes its pooled connections when the store is dropped.
        return None
