"""A login name is never public. A user created without a display name is shown as "Staff"
(the newsroom's house byline), with a slug made from that, on the author pages, the
article JSON and every feed; a display name given later gives the author a slug of their
own. Login names on existing rows are replaced by the migration that brought the rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.importer.service import import_file
from app.users.models import Role, User
from tests.factories import bearer, make_article, make_token, make_user

LOGIN = "jsmith_login"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
NS = {"atom": "http://www.w3.org/2005/Atom", "dc": "http://purl.org/dc/elements/1.1/"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"site_url": "https://news.example"}


async def public_texts(client: httpx.AsyncClient, article_id: int) -> list[str]:
    paths = [
        "/api/v1/authors",
        "/api/v1/articles",
        f"/api/v1/articles/{article_id}",
        "/feeds/rss",
        "/feeds/atom",
        "/feeds/json",
        "/sitemap.xml",
        "/sitemaps/news.xml",
    ]
    texts = []
    for path in paths:
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)
        texts.append(response.text)
    return texts


class TestNoLoginNames:
    async def test_a_user_without_a_display_name_is_staff_everywhere(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        writer = await make_user(session, role=Role.author, username=LOGIN)
        article = await make_article(session, writer)
        (author,) = (await client.get("/api/v1/authors")).json()["items"]
        assert (author["display_name"], author["slug"]) == ("Staff", "staff")
        assert (await client.get("/api/v1/authors/staff")).status_code == 200
        detail = (await client.get(f"/api/v1/articles/{article.id}")).json()
        assert detail["author"]["display_name"] == "Staff"
        assert detail["author"]["slug"] == "staff"

        rss = etree.fromstring((await client.get("/feeds/rss")).content, PARSER)
        assert rss.findtext("channel/item/dc:creator", namespaces=NS) == "Staff"
        atom = etree.fromstring((await client.get("/feeds/atom")).content, PARSER)
        assert atom.findtext("atom:entry/atom:author/atom:name", namespaces=NS) == "Staff"
        feed = (await client.get("/feeds/json")).json()
        assert feed["items"][0]["authors"] == [{"name": "Staff"}]
        for text in await public_texts(client, article.id):
            assert "jsmith" not in text.lower()

    async def test_unnamed_authors_get_slugs_of_their_own(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        first = await make_user(session, role=Role.author, username="first_login")
        second = await make_user(session, role=Role.author, username="second_login")
        await make_article(session, first)
        await make_article(session, second)
        authors = (await client.get("/api/v1/authors")).json()["items"]
        assert sorted(a["slug"] for a in authors) == ["staff", "staff-2"]

    async def test_a_display_name_given_later_brings_its_own_slug(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        admin = await make_user(session, role=Role.admin, display_name="Chief")
        writer = await make_user(session, role=Role.author, username=LOGIN)
        await make_article(session, writer)
        named = await client.patch(
            f"/api/v1/users/{writer.id}",
            json={"display_name": "Jane Smith"},
            headers=bearer(await make_token(session, admin)),
        )
        assert named.status_code == 200, named.text
        assert named.json()["slug"] == "jane-smith"
        (author,) = (await client.get("/api/v1/authors")).json()["items"]
        assert (author["display_name"], author["slug"]) == ("Jane Smith", "jane-smith")
        renamed = await client.patch(
            f"/api/v1/users/{writer.id}",
            json={"display_name": "Jane Smith-Jones"},
            headers=bearer(await make_token(session, admin)),
        )
        assert renamed.json()["slug"] == "jane-smith", "a chosen name's slug stays put"

    async def test_an_author_only_named_by_a_wordpress_post_is_staff(
        self, client: httpx.AsyncClient, session: AsyncSession, tmp_path: Path
    ) -> None:
        path = tmp_path / "undeclared.xml"
        path.write_text(
            '<rss xmlns:dc="http://purl.org/dc/elements/1.1/"'
            ' xmlns:wp="http://wordpress.org/export/1.2/"><channel>\n'
            "<wp:wxr_version>1.2</wp:wxr_version>\n"
            f"<item><title>Wire copy</title><dc:creator>{LOGIN}</dc:creator>"
            "<wp:post_id>7</wp:post_id><wp:status>publish</wp:status>"
            "<wp:post_type>post</wp:post_type>"
            "<wp:post_date_gmt>2020-01-01 08:00:00</wp:post_date_gmt></item>\n"
            "</channel></rss>\n",
            encoding="utf-8",
        )
        await import_file(session, path, zone=ZoneInfo("UTC"))
        await session.commit()
        user = await session.scalar(select(User).where(User.username == LOGIN))
        assert user is not None
        assert (user.display_name, user.slug) == ("Staff", "staff")
        (item,) = (await client.get("/api/v1/articles")).json()["items"]
        for text in await public_texts(client, item["id"]):
            assert "jsmith" not in text.lower()
