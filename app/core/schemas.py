"""Field types shared by every domain's schemas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    field_validator,
)

_HTTP_URL: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _http_url(value: Any) -> str:
    return str(_HTTP_URL.validate_python(value))


# Validated as an absolute http(s) URL (normalised), then kept and served as a plain string.
# The limit is the URL columns' (checked after normalisation, which can lengthen a URL).
WebUrl = Annotated[
    str,
    BeforeValidator(_http_url),
    Field(max_length=2048, json_schema_extra={"format": "uri"}, description="An http(s) URL."),
]
Slug = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
        description="Lowercase letters, digits and single hyphens.",
    ),
]


class InputModel(BaseModel):
    """Request bodies: unknown fields are refused (no mass assignment), text trimmed, and
    NUL characters refused (PostgreSQL cannot store them; no reader types them)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and "\x00" in text for text in texts):
            raise ValueError("must not contain NUL characters")
        return value


# Row ids are 32-bit on both databases: a larger number can only be a 404 or a 422, never a
# query that overflows.
MAX_ID = 2_147_483_647
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
