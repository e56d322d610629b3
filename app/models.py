"""Every table, imported once so the metadata (and Alembic) sees the whole schema."""

from app.articles.models import Article, ArticleSlug, Correction, Revision
from app.auth.models import ApiToken
from app.categories.models import Category
from app.core.db import Base
from app.tags.models import Tag
from app.users.models import User

__all__ = [
    "ApiToken",
    "Article",
    "ArticleSlug",
    "Base",
    "Category",
    "Correction",
    "Revision",
    "Tag",
    "User",
]
