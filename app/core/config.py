"""Settings, read once from the environment (and an optional `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from string import Formatter
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import limits
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from starlette.requests import Request

DEV_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - refused in production below
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SQLITE_URL = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'news.db'}"


CommaList = Annotated[list[str], NoDecode]


def server_address(host: str, port: object) -> str:
    """http://HOST:PORT of `python -m app serve`, as this machine reaches it."""
    # An address that listens everywhere is reached on this machine as loopback.
    if host in ("0.0.0.0", "::"):  # noqa: S104 - compared, never bound
        host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port or 8000}"


def _base_url(name: str, value: str) -> str:
    """An absolute http(s) URL to put paths after: no trailing slash, query or fragment."""
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an absolute http(s) URL, e.g. https://news.example")
    if parts.query or parts.fragment:
        raise ValueError(f"{name} must not have a query or fragment")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = Field(
        "development",
        description="`production` refuses to start with unsafe defaults (secret, debug).",
    )
    database_url: str = Field(
        DEFAULT_SQLITE_URL,
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://...",
    )
    db_pool_size: int = Field(10, ge=1, le=200)
    db_max_overflow: int = Field(10, ge=0, le=200)
    db_read_pool_size: int = Field(
        5,
        ge=1,
        le=200,
        description="PostgreSQL: connections kept for the read path alone, so a burst of "
        "writes never makes readers wait for a connection.",
    )
    db_pool_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a pooled connection."
    )
    db_connect_timeout: float = Field(5.0, gt=0)
    db_pool_pre_ping: bool = Field(
        False,
        description="Test each pooled connection with a round trip before use. Off by default: "
        "it costs about a third of a cheap request, reads already retry once on a connection "
        "the database dropped, and a write on one answers 503 with Retry-After.",
    )
    db_generic_plans: bool = Field(
        False,
        description="PostgreSQL plan_cache_mode=force_generic_plan: each prepared statement "
        "is planned once per connection instead of on every execution. Measured: an article "
        "page and list page 1 gain about 0.5 ms of database time each, but a category "
        "listing's generic plan is 5x slower than its custom one, so it is off by default.",
    )
    db_statement_timeout_ms: int = Field(
        10_000, ge=0, description="PostgreSQL statement_timeout for every connection; 0 = none."
    )
    db_lock_timeout_ms: int = Field(
        8_000,
        ge=0,
        description="PostgreSQL lock_timeout for every connection; 0 = none. A write that "
        "waits longer for a row lock (comments on one busy article) answers 503 with "
        "Retry-After. Below the statement timeout, so that a lock wait is reported as one.",
    )
    secret_key: SecretStr = Field(
        SecretStr(DEV_SECRET),
        description="Signs short-lived values; at least 32 characters in production.",
    )
    access_token_minutes: int = Field(
        60, ge=1, le=24 * 60, description="Lifetime of tokens from POST /api/v1/auth/token."
    )
    login_rate_limit: str = Field(
        "5/minute", description="Failed logins allowed per client address and user name."
    )
    login_rate_limit_ip: str = Field(
        "30/minute",
        description="Login attempts allowed per client address, any user name; successful "
        "ones count too (an attempt is counted before its password is checked).",
    )
    metrics_public: bool = Field(
        False,
        description="Serve /metrics without a token: only where nobody but the scraper can "
        "reach it. Otherwise a token with the metrics:read scope is needed.",
    )
    password_hash_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="argon2 checks and hashes run at once per worker process, in threads "
        "beside the event loop; more logins than this wait their turn.",
    )
    redis_url: str | None = Field(
        None, description="redis://host:6379/0; shares rate limits across worker processes."
    )
    redis_timeout_seconds: float = Field(
        0.5,
        gt=0,
        le=30,
        description="How long a rate-limit call waits for Redis before this process counts "
        "on its own for a few seconds.",
    )
    redis_prefix: str = Field(
        "newsroom", max_length=50, description="Key prefix, so sites can share one Redis."
    )
    cors_origins: CommaList = Field(
        default_factory=list,
        description="Comma-separated origins allowed to call the API from a browser.",
    )
    trusted_proxies: CommaList = Field(
        default_factory=list,
        description="Comma-separated proxy addresses whose X-Forwarded-For is believed.",
    )
    embed_providers: CommaList = Field(
        default_factory=lambda: ["youtube", "vimeo", "x", "instagram", "maps"],
        description="Comma-separated providers whose embeds article bodies keep, as sandboxed "
        "iframes: youtube, vimeo, x, instagram, maps (OpenStreetMap and Google Maps). Empty: "
        "none.",
    )
    site_timezone: str = Field(
        "UTC", description="IANA zone of the site's clock, e.g. Asia/Kabul; used for ?date=."
    )
    comments_close_after_days: int = Field(
        0, ge=0, le=36500, description="Close comments N days after publication; 0 = never."
    )
    comment_moderation: Literal["all", "known", "none"] = Field(
        "known",
        description="Hold every comment (all), approve commenters who already have an approved "
        "comment (known, as WordPress), or approve all (none).",
    )
    comment_max_links: int = Field(2, ge=0, le=100, description="More links → held.")
    comment_max_depth: int = Field(5, ge=1, le=20, description="Thread levels, top included.")
    comment_blocklist_words: CommaList = Field(default_factory=list, description="→ spam.")
    comment_blocklist_emails: CommaList = Field(
        default_factory=list, description="Addresses, or @domain for a whole domain → spam."
    )
    comment_blocklist_ips: CommaList = Field(
        default_factory=list, description="Addresses or CIDR ranges → spam."
    )
    comment_flood_seconds: int = Field(
        15, ge=0, le=3600, description="Min seconds between posts per email; 0 = off."
    )
    comment_rate_limit: str = Field(
        "30/hour", description="Posts per client address (limits syntax); empty = unlimited."
    )
    refused_write_limit: str = Field(
        "30/10 seconds",
        description="Anonymous writes a client address may have refused (a redirect or a "
        "client error) in this window, per worker; past it, its anonymous writes are "
        "answered 429 before routing until the window ends. Limits syntax; empty = off.",
    )
    comment_edit_minutes: int = Field(10, ge=1, le=1440)
    comment_ip_retention_days: int = Field(
        30, ge=1, le=3650, description="After this, IP and user agent are erased."
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted.")
    comment_max_body_bytes: int = Field(65_536, ge=1024)
    body_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="A request body must arrive within this (408)."
    )
    # The HTTP server (`python -m app serve`): what one worker process gives its clients.
    http_keepalive_seconds: int = Field(
        5, ge=1, le=300, description="An idle kept-alive connection is closed after this."
    )
    http_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A request's line and headers must arrive within this, counted from the "
        "connection opening or the request's first byte (408, and the connection is closed).",
    )
    http_max_header_bytes: int = Field(
        65_536,
        ge=4096,
        le=1_048_576,
        description="Largest request line and headers accepted (431, and the connection is "
        "closed).",
    )
    http_max_connections: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Connections (and requests in flight) one worker process takes on; a "
        "request beyond it is answered 503 at once.",
    )
    http_backlog: int = Field(
        2048, ge=1, le=65_535, description="Connections the kernel queues before accept()."
    )
    wxr_max_element_bytes: int = Field(
        16 << 20,
        ge=1024,
        le=1 << 30,
        description="import-wxr: the most text one element of the export (an article's body, "
        "a custom field) may hold; a larger one stops the import, which then keeps nothing.",
    )
    public_max_age: int = Field(
        60, ge=0, le=86400, description="Cache-Control max-age (s) of anonymous reads."
    )
    # Webhooks and email: both leave through the outbox, sent by the delivery worker.
    webhook_worker: bool = Field(
        True, description="Run the outbox delivery worker (webhooks, email) in this process."
    )
    webhook_allow_private_targets: bool = Field(
        False,
        description="Allow webhook URLs on private, loopback, link-local or reserved addresses "
        "(development and tests only).",
    )
    webhook_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Seconds a webhook receiver (or CDN purge API) may stay silent: to accept "
        "the connection, or between two pieces of its answer.",
    )
    # At most 2 minutes: well within the 5-minute claim lease, so no other worker retries a
    # delivery that is still being sent.
    webhook_deadline_seconds: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Seconds a whole webhook attempt (or CDN purge) may take, from connecting "
        "to the last byte of the answer; a receiver that answers slowly, a byte at a time, "
        "fails the attempt, which is tried again later like any failure.",
    )
    webhook_concurrency: int = Field(
        8,
        ge=1,
        le=100,
        description="Webhook receivers one worker sends to at once (one request at a time to "
        "each receiver host); emails have as many slots of their own, so slow receivers "
        "never hold them up.",
    )
    webhook_max_attempts: int = Field(
        8, ge=1, le=30, description="Attempts per delivery (webhook or email) before giving up."
    )
    smtp_url: SecretStr | None = Field(
        None,
        description="smtp://user:pass@host:587 (STARTTLS when offered) or smtps://... (TLS); "
        "none: no email is queued.",
    )
    mail_from: str = Field("newsroom@localhost", description="Sender address of every email.")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:pass@host:587 or smtps://...")
        return value

    response_cache: bool = Field(
        True, description="Serve anonymous reads from a cache of rendered responses."
    )
    response_cache_max_mb: int = Field(
        64, ge=1, le=65536, description="Memory the response cache may hold, per worker."
    )
    response_cache_ttl: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="Seconds an entry lives at most: a safety net, since writes invalidate "
        "what they change everywhere.",
    )
    cache_generation_file: Path = Field(
        PROJECT_ROOT / "var" / "cache-generation",
        description="Shared by the workers of one machine: which cache keys were invalidated.",
    )
    public_base_url: str | None = Field(
        None,
        description="Absolute http(s) base URL this API is reached at (e.g. "
        "https://news.example): every absolute address it gives out (Link, Location) starts "
        "with it. Unset: addresses are relative, or built from the request when it comes "
        "from a trusted proxy or loopback (and then never stored by the response cache).",
    )
    public_stale_while_revalidate: int = Field(
        30, ge=0, le=86400, description="Cache-Control stale-while-revalidate of public reads."
    )
    public_stale_if_error: int = Field(
        86400, ge=0, le=31_536_000, description="Cache-Control stale-if-error of public reads."
    )
    cdn_purge: Literal["none", "varnish", "fastly", "cloudflare"] = Field(
        "none", description="Where invalidated keys are purged, through the outbox."
    )
    cdn_max_age: int = Field(
        0,
        ge=0,
        le=31_536_000,
        description="Seconds a purged CDN may keep a public read (Surrogate-Control and "
        "CDN-Cache-Control); 0: the same as PUBLIC_MAX_AGE.",
    )
    cdn_purge_urls: CommaList = Field(
        default_factory=list,
        description="CDN_PURGE=varnish: comma-separated base URLs of the Varnish instances.",
    )
    fastly_service_id: str | None = Field(None, max_length=100)
    fastly_api_token: SecretStr | None = None
    fastly_api_url: str = "https://api.fastly.com"
    cloudflare_zone_id: str | None = Field(None, max_length=100)
    cloudflare_api_token: SecretStr | None = None
    cloudflare_api_url: str = "https://api.cloudflare.com/client/v4"

    @field_validator("refused_write_limit")
    @classmethod
    def _limit_syntax(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                limits.parse(value)
            except ValueError as exc:
                raise ValueError(f"not a limit such as '30/10 seconds': {value!r}") from exc
        return value

    @field_validator("public_base_url")
    @classmethod
    def _absolute_base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _base_url("PUBLIC_BASE_URL", value)

    @model_validator(mode="after")
    def _purge_target_complete(self) -> Settings:
        missing = {
            "varnish": [] if self.cdn_purge_urls else ["CDN_PURGE_URLS"],
            "fastly": [
                name
                for name, value in (
                    ("FASTLY_SERVICE_ID", self.fastly_service_id),
                    ("FASTLY_API_TOKEN", self.fastly_api_token),
                )
                if not value
            ],
            "cloudflare": [
                name
                for name, value in (
                    ("CLOUDFLARE_ZONE_ID", self.cloudflare_zone_id),
                    ("CLOUDFLARE_API_TOKEN", self.cloudflare_api_token),
                )
                if not value
            ],
        }.get(self.cdn_purge, [])
        if missing:
            raise ValueError(f"CDN_PURGE={self.cdn_purge} needs {', '.join(missing)}")
        return self

    # The media library (app/media): where uploads go, what they may be, and their addresses.
    media_storage: Literal["local", "s3"] = Field(
        "local", description="Where uploaded files are kept: this machine's disk, or S3."
    )
    media_root: Path = Field(
        PROJECT_ROOT / "var" / "media",
        description="MEDIA_STORAGE=local: the folder that holds uploads and renditions.",
    )
    media_base_url: str | None = Field(
        None,
        description="Absolute base URL that stored files are read from (a CDN in front of "
        "the bucket or of /media). Unset: PUBLIC_BASE_URL/media, else http://HOST:PORT/media "
        "for local storage, and the bucket's own address for S3.",
    )
    media_max_bytes: int = Field(
        26_214_400, ge=1024, le=1_073_741_824, description="Largest upload accepted (413)."
    )
    media_body_timeout_seconds: float = Field(
        120.0, gt=0, le=3600, description="An upload must arrive within this (408)."
    )
    media_max_pixels: int = Field(
        60_000_000,
        ge=10_000,
        le=1_000_000_000,
        description="Largest image accepted, in pixels (all frames of an animation counted): "
        "a small file that decodes to more is refused as a decompression bomb.",
    )
    media_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="Uploads decoded and resized at once per worker; each 24-megapixel photo "
        "holds about 100 MB while it is worked on.",
    )
    media_jpeg_quality: int = Field(85, ge=30, le=100, description="JPEG and WebP renditions.")
    media_s3_bucket: str | None = Field(None, max_length=63)
    media_s3_prefix: str = Field("", max_length=200, description="Put before every key.")
    media_s3_endpoint_url: str | None = Field(
        None, description="An S3-compatible server (MinIO, R2, ...); unset: AWS."
    )
    media_s3_region: str = "us-east-1"
    media_s3_access_key_id: str | None = None
    media_s3_secret_access_key: SecretStr | None = None

    @field_validator("media_base_url", "media_s3_endpoint_url")
    @classmethod
    def _absolute_media_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return _base_url("MEDIA_BASE_URL / MEDIA_S3_ENDPOINT_URL", value)

    @model_validator(mode="after")
    def _bucket_named(self) -> Settings:
        if self.media_storage == "s3" and not self.media_s3_bucket:
            raise ValueError("MEDIA_STORAGE=s3 needs MEDIA_S3_BUCKET")
        return self

    hsts: bool = Field(False, description="Send Strict-Transport-Security (behind TLS only).")
    log_level: str = "INFO"
    site_name: str = "Newsroom"
    # Feeds and sitemaps: where the public website lives, and what its feeds say.
    # Where `python -m app serve` listens (its --host / --port set them for the workers).
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    site_url: str = Field(
        "",
        description="Absolute http(s) base URL of the public website, without a trailing "
        "slash; unset, this server's own address (http://HOST:PORT).",
    )
    article_url_template: str = Field(
        "{site_url}/{slug}",
        description="Where readers read an article; placeholders {site_url}, {slug}, {id}, "
        "{number}.",
    )
    feed_items: int = Field(20, ge=1, le=100, description="Articles in each feed.")
    site_description: str = Field("Latest news", description="The feeds' description.")
    site_language: str = Field("en", description="Language tag of the feeds, e.g. en or ps-AF.")

    @field_validator("site_url")
    @classmethod
    def _absolute_site_url(cls, value: str) -> str:
        return _base_url("SITE_URL", value) if value else value

    @model_validator(mode="before")
    @classmethod
    def _site_url_from_the_server(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("site_url"):
            address = server_address(str(data.get("host") or "127.0.0.1"), data.get("port"))
            data = {**data, "site_url": address}
        return data

    @field_validator("article_url_template")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        known = ("site_url", "slug", "id", "number")
        try:
            fields = {name for _, name, _, _ in Formatter().parse(value) if name is not None}
            unknown = sorted(fields - set(known))
            sample = (
                ""
                if unknown
                else value.format(site_url="https://x.example", slug="s", id=1, number=1)
            )
        except ValueError as exc:
            raise ValueError(f"ARTICLE_URL_TEMPLATE is not a valid template: {exc}") from exc
        if unknown:
            raise ValueError(
                f"ARTICLE_URL_TEMPLATE has unknown placeholder(s) {unknown}; "
                f"use {', '.join('{' + name + '}' for name in known)}"
            )
        if urlsplit(sample).scheme not in ("http", "https"):
            raise ValueError("ARTICLE_URL_TEMPLATE must give an absolute http(s) URL")
        return value

    @field_validator(
        "cors_origins",
        "trusted_proxies",
        "embed_providers",
        "cdn_purge_urls",
        "comment_blocklist_words",
        "comment_blocklist_emails",
        "comment_blocklist_ips",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("embed_providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        from app.core.html import EMBED_PROVIDERS

        unknown = sorted(set(value) - set(EMBED_PROVIDERS))
        if unknown:
            raise ValueError(
                f"EMBED_PROVIDERS: unknown {', '.join(unknown)}; known: "
                f"{', '.join(EMBED_PROVIDERS)}"
            )
        return value

    @field_validator("site_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.site_timezone)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            secret = self.secret_key.get_secret_value()
            if secret == DEV_SECRET or len(secret) < 32:
                raise ValueError(
                    "SECRET_KEY must be set to a random value of at least 32 characters "
                    "when ENVIRONMENT=production"
                )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()


def app_settings(request: Request) -> Settings:
    """The settings the running app was created with (tests create apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings
