from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.categories.schemas import Slug
from app.core.schemas import InputModel

MAX_NAME = 100

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME, examples=["Elections"])]


class TagCreate(InputModel):
    """A new tag; also the body of `PUT`, where an absent slug is generated from the name."""

    name: Name
    slug: Slug | None = None


class TagUpdate(InputModel):
    """Only the fields sent change. `slug: null` regenerates the slug from the name."""

    name: Name | None = None
    slug: Slug | None = None


class TagPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    article_count: int = Field(description="Published articles with this tag.")
    created_at: datetime
    updated_at: datetime
