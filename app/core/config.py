"""Settings, read once from the environment (and an optional `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me"  # noqa: S105 - refused in production below
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SQLITE_URL = f"sqlite+aiosqlite:///{PROJECT_ROOT / 'var' / 'news.db'}"


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
    db_pool_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a pooled connection."
    )
    db_connect_timeout: float = Field(5.0, gt=0)
    db_statement_timeout_ms: int = Field(
        10_000, ge=0, description="PostgreSQL statement_timeout for every connection; 0 = none."
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
        "30/minute", description="Failed logins allowed per client address, any user name."
    )
    redis_url: str | None = Field(
        None, description="redis://host:6379/0; shares rate limits across worker processes."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed to call the API from a browser.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated proxy addresses whose X-Forwarded-For is believed.",
    )
    site_timezone: str = Field(
        "UTC", description="IANA zone of the site's clock, e.g. Asia/Kabul; used for ?date=."
    )
    comments_close_after_days: int = Field(
        0, ge=0, le=36500, description="Close comments N days after publication; 0 = never."
    )
    public_max_age: int = Field(
        60, ge=0, le=86400, description="Cache-Control max-age (s) of anonymous reads."
    )
    hsts: bool = Field(False, description="Send Strict-Transport-Security (behind TLS only).")
    log_level: str = "INFO"
    site_name: str = "Newsroom"

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
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
