"""Field types shared by every domain's schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl


def _as_str(value: HttpUrl) -> str:
    return str(value)


WebUrl = Annotated[HttpUrl, AfterValidator(_as_str), Field(description="An absolute http(s) URL.")]
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
    """Request bodies: unknown fields are refused (no mass assignment), text trimmed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
