from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from app.core.schemas import InputModel, WebUrl

Focal = Annotated[
    float,
    Field(ge=0, le=1, description="Where the subject is, 0..1 from the left (x) or top (y)."),
]
AltText = Annotated[
    str,
    Field(
        max_length=1000,
        description="What the image shows, for readers who cannot see it. Required before "
        "the image goes on a published article.",
    ),
]
Caption = Annotated[str, Field(max_length=2000)]
Credit = Annotated[
    str, Field(max_length=300, description='Who to credit, e.g. "Photo: AP / Jane Roe".')
]
Copyright = Annotated[str, Field(max_length=300, description="e.g. © 2026 Jane Roe.")]


class MediaUpload(InputModel):
    """The form fields beside an upload's file."""

    title: Annotated[str, Field(max_length=300)] | None = Field(
        None, description="Defaults to the file's own title, else its name."
    )
    alt_text: AltText | None = None
    caption: Caption | None = Field(None, description="Defaults to the file's own caption.")
    description: Annotated[str, Field(max_length=10_000)] | None = None
    credit: Credit | None = Field(None, description="Defaults to the file's IPTC/XMP credit.")
    copyright: Copyright | None = Field(None, description="Defaults to the file's own.")
    source_url: WebUrl | None = None
    focal_x: Focal = 0.5
    focal_y: Focal = 0.5


class MediaUpdate(InputModel):
    """Only the fields sent change; moving the focal point makes new crops."""

    title: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    alt_text: AltText | None = None
    caption: Caption | None = None
    description: Annotated[str, Field(max_length=10_000)] | None = None
    credit: Credit | None = None
    copyright: Copyright | None = None
    source_url: WebUrl | None = None
    focal_x: Focal | None = None
    focal_y: Focal | None = None


class MediaSize(BaseModel):
    url: str
    width: int
    height: int
    mime_type: str


class MediaRef(BaseModel):
    """An image as an article shows it: enough to render it with its credit."""

    id: int
    url: str = Field(description="The full-size image.")
    width: int
    height: int
    mime_type: str
    alt_text: str
    caption: str
    credit: str
    copyright: str
    sizes: dict[str, MediaSize] = Field(
        description='Every rendition by name: "full", "w320" … "w2048" (never wider than '
        'the original), each also as "…-webp", and the crops "crop-1x1-…", "crop-4x3-…", '
        '"crop-16x9-…" centred on the focal point.'
    )
    srcset: str = Field(description="For <img srcset>: the widths in the original format.")
    srcset_webp: str = Field(description="The same widths in WebP, for <source type>.")


class MediaPublic(MediaRef):
    title: str
    description: str
    source_url: str | None
    focal_x: float
    focal_y: float
    file_size: int = Field(description="Bytes of the full-size file.")
    taken_at: datetime | None = Field(description="When the photo was taken, from its camera.")
    uploader_id: int | None
    created_at: datetime
    updated_at: datetime
