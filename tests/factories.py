"""Small async factories: build what a test needs, explicitly, through the services."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles import service as articles
from app.articles.models import Article, ArticleStatus, article_categories, article_tags
from app.articles.schemas import ArticleCreate
from app.auth import service as auth
from app.categories import service as categories
from app.categories.models import Category
from app.categories.schemas import CategoryCreate
from app.core.db import utcnow
from app.core.security import Passwords, acting_as
from app.tags import service as tags
from app.tags.models import Tag
from app.tags.schemas import TagCreate
from app.users import service as users
from app.users.models import Role, User
from app.users.schemas import UserCreate

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


async def make_user(
    session: AsyncSession,
    *,
    role: Role = Role.author,
    username: str | None = None,
    display_name: str | None = None,
    email: str | None = None,
) -> User:
    n = next(_seq)
    user = await users.create(
        session,
        UserCreate(
            username=username or f"{role.value}{n}",
            password=PASSWORD,
            role=role,
            display_name=display_name,
            email=email,
        ),
        passwords=Passwords(1),
    )
    await session.commit()
    return user


async def make_token(
    session: AsyncSession,
    user: User,
    *,
    scopes: list[str] | None = None,
    lifetime: timedelta | None = None,
) -> str:
    _, raw = await auth.issue(
        session, user, kind="api", name="test", scopes=scopes, lifetime=lifetime
    )
    await session.commit()
    return raw


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- articles ------------------------------------------------------------------------


async def make_article(
    session: AsyncSession,
    author: User,
    *,
    title: str | None = None,
    status: ArticleStatus = ArticleStatus.published,
    published_at: datetime | None = None,
    **fields: Any,
) -> Article:
    n = next(_seq)
    data = ArticleCreate(
        title=title or f"Article {n}",
        status=status,
        published_at=published_at
        if published_at is not None
        else (utcnow() - timedelta(hours=n) if status == ArticleStatus.published else None),
        body=fields.pop("body", f"<p>Body of article {n}.</p>"),
        **fields,
    )
    article = await articles.create(session, data, acting_as(author))
    await session.commit()
    return article


# --- categories and tags ---------------------------------------------------------------


async def auth_headers(session: AsyncSession, role: Role = Role.editor) -> dict[str, str]:
    """The Authorization header of a new user with `role`."""
    return bearer(await make_token(session, await make_user(session, role=role)))


async def make_category(
    session: AsyncSession,
    *,
    name: str | None = None,
    slug: str | None = None,
    parent: Category | None = None,
    description: str | None = None,
) -> Category:
    n = next(_seq)
    category = await categories.create(
        session,
        CategoryCreate(
            name=name or f"Category {n}",
            slug=slug,
            parent_id=parent.id if parent else None,
            description=description,
        ),
    )
    await session.commit()
    return category


async def make_tag(
    session: AsyncSession, *, name: str | None = None, slug: str | None = None
) -> Tag:
    tag = await tags.create(session, TagCreate(name=name or f"Tag {next(_seq)}", slug=slug))
    await session.commit()
    return tag


async def insert_article(
    session: AsyncSession,
    author: User,
    category: Category,
    *,
    also_in: tuple[Category, ...] = (),
    tagged: tuple[Tag, ...] = (),
    status: ArticleStatus = ArticleStatus.published,
    published_at: datetime | None = None,
) -> Article:
    """An article row written straight to the tables, bypassing the articles service: filed
    in `category` (primary) and `also_in`, with `tagged`. Published an hour ago by default."""
    n = next(_seq)
    if published_at is None and status == ArticleStatus.published:
        published_at = utcnow() - timedelta(hours=1)
    article = Article(
        number=n,
        title=f"Article {n}",
        slug=f"article-{n}",
        excerpt="Excerpt.",
        body="<p>Body.</p>",
        status=status,
        published_at=published_at,
        author_id=author.id,
        category_id=category.id,
    )
    session.add(article)
    await session.flush()
    filed = {c.id for c in (category, *also_in)}
    await session.execute(
        insert(article_categories),
        [{"article_id": article.id, "category_id": cid} for cid in sorted(filed)],
    )
    if tagged:
        await session.execute(
            insert(article_tags), [{"article_id": article.id, "tag_id": t.id} for t in tagged]
        )
    await session.commit()
    return article
