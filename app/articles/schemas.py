from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from app.articles.models import ArticleStatus, CommentStatus, CorrectionKind
from app.core.dates import in_utc
from app.core.schemas import Id, InputModel, Slug, WebUrl
from app.media.schemas import MediaRef

TITLE_MAX = 300
Title = Annotated[str, Field(min_length=1, max_length=TITLE_MAX)]
Kicker = Annotated[
    str, Field(min_length=1, max_length=200, description="The line above the headline.")
]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
Caption = Annotated[str, Field(min_length=1, max_length=500)]
Body = Annotated[
    str,
    Field(max_length=500_000, description="HTML; sanitised on write with an allow-list."),
]
Excerpt = Annotated[str, Field(max_length=2000, description="Plain text; HTML is stripped.")]
TagList = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=100)]],
    Field(max_length=50, description="Tag names or slugs; missing tags are created."),
]
CategoryIds = Annotated[
    list[Id], Field(max_length=20, description="Further categories besides the primary one.")
]
When = Annotated[
    AwareDatetime,
    AfterValidator(in_utc),
    Field(description="ISO 8601 with a zone offset, e.g. 2017-11-24T12:53:00+04:30."),
]


class _ArticleFields(InputModel):
    kicker: Kicker | None = None
    slug: Slug | None = Field(None, description="Generated from the title when absent.")
    excerpt: Excerpt | None = Field(None, description="Derived from the body when absent.")
    body: Body = ""
    status: ArticleStatus = ArticleStatus.draft
    published_at: When | None = Field(
        None,
        description="When it becomes public. `published` without it means now; a future "
        "instant makes a published article `scheduled`.",
    )
    number: int | None = Field(
        None, ge=1, le=2_000_000_000, description="Public article number; next free if absent."
    )
    byline: ShortText | None = None
    source_name: ShortText | None = Field(None, examples=["Stars and Stripes"])
    source_url: WebUrl | None = None
    featured_image_url: WebUrl | None = None
    featured_image_caption: Caption | None = None
    featured_media_id: Id | None = Field(
        None,
        description="A media library item as the featured image (its alt text is required "
        "once the article is published); `featured_image_url` stays for images hosted "
        "elsewhere.",
    )
    category_id: Id | None = Field(None, description="The primary category (the page's).")
    category_ids: CategoryIds = Field(default_factory=list)
    tags: TagList = Field(default_factory=list)
    comment_status: CommentStatus = CommentStatus.open
    comments_close_at: When | None = Field(
        None, description="When comments close; derived from the site setting when absent."
    )
    author_id: Id | None = Field(
        None, description="Editors and admins only: file the article under another author."
    )


class ArticleCreate(_ArticleFields):
    title: Title


class ArticleReplace(ArticleCreate):
    """PUT: the whole article; absent optional fields return to their defaults."""


class ArticleUpdate(InputModel):
    """PATCH: only the fields sent change."""

    title: Title | None = None
    kicker: Kicker | None = None
    slug: Slug | None = None
    excerpt: Excerpt | None = None
    body: Body | None = None
    status: ArticleStatus | None = None
    published_at: When | None = None
    number: int | None = Field(None, ge=1, le=2_000_000_000)
    byline: ShortText | None = None
    source_name: ShortText | None = None
    source_url: WebUrl | None = None
    featured_image_url: WebUrl | None = None
    featured_image_caption: Caption | None = None
    featured_media_id: Id | None = None
    category_id: Id | None = None
    category_ids: CategoryIds | None = None
    tags: TagList | None = None
    comment_status: CommentStatus | None = None
    comments_close_at: When | None = None
    author_id: Id | None = None


class CorrectionCreate(InputModel):
    kind: CorrectionKind = CorrectionKind.correction
    text: str = Field(min_length=1, max_length=5000)
    noted_at: When | None = Field(None, description="Defaults to now.")


# --- output ---------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AuthorRef(_Out):
    display_name: str
    slug: str
    avatar_url: str | None


class CategoryRef(_Out):
    id: int
    name: str
    slug: str


class TagRef(_Out):
    id: int
    name: str
    slug: str


class CorrectionOut(_Out):
    id: int
    kind: CorrectionKind
    text: str
    noted_at: datetime


class ArticleLink(_Out):
    id: int
    number: int
    slug: str
    title: str
    published_at: datetime | None


class ArticleListItem(_Out):
    """What a list needs: no body."""

    id: int
    number: int = Field(description='The site\'s public article number ("No: 5186").')
    slug: str
    url: str = Field(
        description="Where readers read it on the website (`ARTICLE_URL_TEMPLATE`), absolute."
    )
    title: str
    kicker: str | None
    excerpt: str = Field(
        description="Plain text (characters such as `<` and `&` are themselves, not markup): "
        "insert it as text, never as HTML."
    )
    status: ArticleStatus = Field(description="`published` once a scheduled time has passed.")
    published_at: datetime | None
    updated_at: datetime
    author: AuthorRef
    byline: str | None
    category: CategoryRef | None = Field(description="The primary category.")
    tags: list[TagRef]
    source_name: str | None
    source_url: str | None
    featured_image_url: str | None
    featured_image_caption: str | None
    featured_media_id: int | None
    featured_media: MediaRef | None = Field(
        description="The featured image from the media library, with its credit and sizes."
    )
    word_count: int
    reading_minutes: int
    comment_count: int = Field(description="Approved comments.")
    comment_status: CommentStatus
    comments_close_at: datetime | None = Field(
        description="When comments close (null: never); clients can tell before they post."
    )
    comments_open: bool


class ArticleDetail(ArticleListItem):
    body: str
    body_media: list[MediaRef] = Field(
        description="The media library images the body shows (`<img data-media-id>`), with "
        "their credits, for rendering each one's caption and credit."
    )
    categories: list[CategoryRef] = Field(description="Every category, the primary included.")
    breadcrumbs: list[CategoryRef] = Field(description="The primary category's path from the root.")
    corrections: list[CorrectionOut]
    previous: ArticleLink | None = Field(description="The older neighbour in its category.")
    next: ArticleLink | None = Field(description="The newer neighbour in its category.")


class ArticleAdmin(ArticleDetail):
    """The detail as a token holder sees it."""

    author_id: int
    category_id: int | None
    created_at: datetime
    version: int = Field(description="Write counter; part of the ETag used with If-Match.")


class RevisionSummary(_Out):
    id: int
    article_id: int
    title: str
    created_at: datetime = Field(description="When this version was replaced.")
    changed_by: AuthorRef | None = Field(description="Who replaced it.")


class RevisionOut(RevisionSummary):
    kicker: str | None
    excerpt: str
    body: str
