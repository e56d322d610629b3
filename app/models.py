"""Every table, imported once so the metadata (and Alembic) sees the whole schema."""

from app.articles.models import Article, ArticleSlug, Correction, Revision
from app.auth.models import ApiToken
from app.categories.models import Category
from app.comments.models import Comment
from app.core.db import Base
from app.core.idempotency import IdempotentResponse
from app.media.models import Media
from app.outbox.models import Delivery
from app.tags.models import Tag
from app.users.models import User
from app.webhooks.models import Webhook

__all__ = [
    "ApiToken",
    "Article",
    "ArticleSlug",
    "Base",
    "Category",
    "Comment",
    "Correction",
    "Delivery",
    "IdempotentResponse",
    "Media",
    "Revision",
    "Tag",
    "User",
    "Webhook",
]
