from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import MAX_ID, InputModel
from app.core.text import MAX_SLUG

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"

Name = Annotated[str, Field(min_length=1, max_length=120, examples=["World"])]
Slug = Annotated[
    str,
    Field(
        max_length=MAX_SLUG,
        pattern=SLUG_PATTERN,
        description="Lower-case words joined by hyphens; generated from the name when absent.",
        examples=["world"],
    ),
]
Description = Annotated[str, Field(max_length=5000)]
ParentId = Annotated[
    int,
    Field(ge=1, le=MAX_ID, description="The parent category; null or absent for a top-level one."),
]


class CategoryCreate(InputModel):
    """A new category; also the body of `PUT`, where every absent field is reset."""

    name: Name
    slug: Slug | None = None
    description: Description | None = None
    parent_id: ParentId | None = None


class CategoryUpdate(InputModel):
    """Only the fields sent change. `slug: null` regenerates the slug from the name."""

    name: Name | None = None
    slug: Slug | None = None
    description: Description | None = None
    parent_id: ParentId | None = None


class CategoryRef(BaseModel):
    """A link to a category: enough for breadcrumbs and menus."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str


class CategoryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    description: str | None
    parent_id: int | None
    article_count: int = Field(
        description="Published articles in this category or any below it, each once: the "
        "`total` that `/api/v1/articles?category={slug}` shows."
    )
    own_article_count: int = Field(
        description="Published articles filed in this category itself (WordPress' `count`)."
    )
    created_at: datetime
    updated_at: datetime


class CategoryNode(CategoryPublic):
    """A category in `?tree=true`, with its subcategories nested, ordered by name."""

    children: list[CategoryNode]


class CategoryDetail(CategoryPublic):
    path: list[CategoryRef] = Field(
        description="Breadcrumbs: from the top-level category down to this one, included."
    )
    children: list[CategoryRef] = Field(description="Direct subcategories, ordered by name.")
