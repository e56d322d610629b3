"""JSON Feed 1.1 (https://jsonfeed.org/version/1.1), as the OpenAPI document shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class JsonFeedAuthor(BaseModel):
    name: str = Field(description="The author's public display name (never an email).")


class JsonFeedItem(BaseModel):
    id: str = Field(description="Stable id: a tag: URI that survives slug changes.")
    url: str = Field(description="Where readers read the article.")
    title: str
    content_html: str = Field(description="The article's body, HTML.")
    summary: str | None = Field(None, description="The excerpt, plain text.")
    date_published: datetime = Field(description="RFC 3339.")
    date_modified: datetime = Field(description="RFC 3339.")
    authors: list[JsonFeedAuthor]
    tags: list[str] = Field(description="The article's categories and tags, by name.")
    image: str | None = Field(None, description="The featured image's URL.")


class JsonFeed(BaseModel):
    version: Literal["https://jsonfeed.org/version/1.1"] = "https://jsonfeed.org/version/1.1"
    title: str
    home_page_url: str
    feed_url: str
    description: str
    language: str
    items: list[JsonFeedItem]
