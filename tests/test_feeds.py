"""Feeds (RSS 2.0, Atom 1.0, JSON Feed 1.1) and sitemaps: valid documents, absolute
addresses, filters, visibility, caching, and never an email address."""

from __future__ import annotations

import os
import re
import sys
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from pydantic import ValidationError
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article, ArticleStatus
from app.core.config import Settings
from app.core.db import utcnow
from app.feeds import service
from app.feeds.builders import news_language, w3c
from app.users.models import User
from tests.factories import make_article, make_category, make_user
from tests.support import assert_problem, free_port, running_server

SITE = "https://news.example"
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "sm": "http://www.sitemaps.org/schemas/sitemap/0.9",
    "news": "http://www.google.com/schemas/sitemap-news/0.9",
}
FEEDS = ("/feeds/rss", "/feeds/atom", "/feeds/json")
SITEMAPS = ("/sitemap.xml", "/sitemaps/articles-1.xml", "/sitemaps/news.xml")
EMAIL = "kim.private@mail.example"
# No entities, no network, no DTD: the documents are parsed as a careful client would.
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "site_url": f"{SITE}/",  # the trailing slash is dropped
        "article_url_template": "{site_url}/news/{number}/{slug}",
        "site_name": "Example Daily",
        "site_description": "News from the example desk",
        "site_language": "en-GB",
        "feed_items": 20,
    }


def url_of(article: Article) -> str:
    return f"{SITE}/news/{article.number}/{article.slug}"


def parse(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return etree.fromstring(response.content, PARSER)


def rfc3339(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() is not None, value
    return moment


@pytest.fixture
async def kim(session: AsyncSession) -> User:
    return await make_user(session, display_name="Kim Lee", email=EMAIL)


@pytest.fixture
async def three(session: AsyncSession, kim: User) -> list[Article]:
    """Three public articles an hour apart, newest first, with a category and tags."""
    world = await make_category(session, name="World", slug="world")
    now = utcnow()
    return [
        await make_article(
            session,
            kim,
            title=f"Story {i}",
            excerpt=f"Excerpt {i}.",
            body=f"<p>Body <em>{i}</em>.</p>",
            published_at=now - timedelta(hours=i + 1),
            category_id=world.id,
            tags=["Peace Talks"],
        )
        for i in range(3)
    ]


class TestRss:
    async def test_rss_20_with_every_required_element_and_absolute_links(
        self, client: httpx.AsyncClient, three: list[Article]
    ) -> None:
        response = await client.get("/feeds/rss")
        assert response.headers["content-type"] == "application/rss+xml; charset=utf-8"
        rss = parse(response)
        assert rss.tag == "rss"
        assert rss.get("version") == "2.0"
        channel = rss.find("channel")
        assert channel.findtext("title") == "Example Daily"
        assert channel.findtext("link") == SITE
        assert channel.findtext("description") == "News from the example desk"
        assert channel.findtext("language") == "en-GB"
        self_link = channel.find("atom:link", NS)
        assert self_link.get("rel") == "self"
        assert self_link.get("href") == f"{SITE}/feeds/rss"
        built = parsedate_to_datetime(channel.findtext("lastBuildDate"))
        assert built.tzinfo is not None

        items = channel.findall("item")
        assert [i.findtext("title") for i in items] == ["Story 0", "Story 1", "Story 2"]
        first, article = items[0], three[0]
        assert first.findtext("link") == url_of(article)
        guid = first.find("guid")
        assert guid.text.startswith("tag:news.example,")
        assert guid.text.endswith(f":articles/{article.id}")
        assert guid.get("isPermaLink") == "false"
        published = parsedate_to_datetime(first.findtext("pubDate"))
        assert published.utcoffset() is not None
        assert article.published_at is not None
        assert abs(published - article.published_at) < timedelta(seconds=1)
        assert first.findtext("description") == "Excerpt 0."
        assert first.findtext("content:encoded", namespaces=NS) == "<p>Body <em>0</em>.</p>"
        assert first.findtext("dc:creator", namespaces=NS) == "Kim Lee"
        assert first.find("author") is None, "RSS <author> must be an email: never sent"
        assert {c.text for c in first.findall("category")} == {"World", "Peace Talks"}
        guids = [i.findtext("guid") for i in items]
        assert len(set(guids)) == 3


class TestAtom:
    async def test_atom_10_with_required_elements_and_rfc3339_dates(
        self, client: httpx.AsyncClient, three: list[Article]
    ) -> None:
        response = await client.get("/feeds/atom")
        assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
        feed = parse(response)
        assert feed.tag == "{http://www.w3.org/2005/Atom}feed"
        assert feed.findtext("atom:id", namespaces=NS)
        assert feed.findtext("atom:title", namespaces=NS) == "Example Daily"
        updated = rfc3339(feed.findtext("atom:updated", namespaces=NS))
        links = {link.get("rel"): link.get("href") for link in feed.findall("atom:link", NS)}
        assert links == {"self": f"{SITE}/feeds/atom", "alternate": SITE}
        assert feed.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-GB"

        entries = feed.findall("atom:entry", NS)
        assert len(entries) == 3
        newest = max(rfc3339(e.findtext("atom:updated", namespaces=NS)) for e in entries)
        assert updated == newest, "the feed's updated is its newest entry's"
        entry, article = entries[0], three[0]
        assert entry.findtext("atom:id", namespaces=NS).startswith("tag:news.example,")
        assert entry.findtext("atom:title", namespaces=NS) == "Story 0"
        rfc3339(entry.findtext("atom:updated", namespaces=NS))
        published = rfc3339(entry.findtext("atom:published", namespaces=NS))
        assert article.published_at is not None
        assert abs(published - article.published_at) < timedelta(seconds=1)
        assert entry.find("atom:link", NS).get("href") == url_of(article)
        # No rel means alternate in Atom (feedgen writes entry links without one).
        assert entry.find("atom:link", NS).get("rel", "alternate") == "alternate"
        content = entry.find("atom:content", NS)
        assert content.get("type") == "html"
        assert content.text == "<p>Body <em>0</em>.</p>"
        assert entry.findtext("atom:summary", namespaces=NS) == "Excerpt 0."
        author = entry.find("atom:author", NS)
        assert author.findtext("atom:name", namespaces=NS) == "Kim Lee"
        assert author.find("atom:email", NS) is None
        terms = {c.get("label") for c in entry.findall("atom:category", NS)}
        assert terms == {"World", "Peace Talks"}


class TestJsonFeed:
    async def test_json_feed_11(self, client: httpx.AsyncClient, three: list[Article]) -> None:
        response = await client.get("/feeds/json")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/feed+json"
        feed = response.json()
        assert feed["version"] == "https://jsonfeed.org/version/1.1"
        assert feed["title"] == "Example Daily"
        assert feed["home_page_url"] == SITE
        assert feed["feed_url"] == f"{SITE}/feeds/json"
        assert feed["language"] == "en-GB"
        assert [item["title"] for item in feed["items"]] == ["Story 0", "Story 1", "Story 2"]
        item, article = feed["items"][0], three[0]
        assert item["id"].startswith("tag:news.example,")
        assert item["url"] == url_of(article)
        assert item["content_html"] == "<p>Body <em>0</em>.</p>"
        assert item["summary"] == "Excerpt 0."
        assert rfc3339(item["date_published"]) <= rfc3339(item["date_modified"])
        assert item["authors"] == [{"name": "Kim Lee"}]
        assert set(item["tags"]) == {"World", "Peace Talks"}

    async def test_every_feed_gives_the_same_ids_for_the_same_articles(
        self, client: httpx.AsyncClient, three: list[Article]
    ) -> None:
        rss = parse(await client.get("/feeds/rss"))
        atom = parse(await client.get("/feeds/atom"))
        json_ids = [i["id"] for i in (await client.get("/feeds/json")).json()["items"]]
        assert [g.text for g in rss.iter("guid")] == json_ids
        assert [
            e.findtext("atom:id", namespaces=NS) for e in atom.iter(f"{{{NS['atom']}}}entry")
        ] == (json_ids)


class TestFilters:
    @pytest.fixture
    async def sections(self, session: AsyncSession, kim: User) -> dict[str, Article]:
        world = await make_category(session, name="World", slug="world")
        asia = await make_category(session, name="Asia", slug="asia", parent=world)
        sport = await make_category(session, name="Sport", slug="sport")
        now = utcnow()
        return {
            "world": await make_article(
                session, kim, title="In World", category_id=world.id, published_at=now
            ),
            "asia": await make_article(
                session,
                kim,
                title="In Asia",
                category_id=asia.id,
                tags=["Elections"],
                published_at=now - timedelta(hours=1),
            ),
            "sport": await make_article(
                session,
                kim,
                title="In Sport",
                category_id=sport.id,
                tags=["Elections"],
                published_at=now - timedelta(hours=2),
            ),
        }

    @pytest.mark.usefixtures("sections")
    async def test_category_includes_its_subcategories(self, client: httpx.AsyncClient) -> None:
        world = (await client.get("/feeds/json", params={"category": "world"})).json()
        assert [i["title"] for i in world["items"]] == ["In World", "In Asia"]
        assert world["title"] == "Example Daily — World"
        assert world["feed_url"] == f"{SITE}/feeds/json?category=world"
        asia = parse(await client.get("/feeds/rss", params={"category": "asia"}))
        assert [t.text for t in asia.iter("title")][1:] == ["In Asia"]

    @pytest.mark.usefixtures("sections")
    async def test_tag_filter_and_both_together(self, client: httpx.AsyncClient) -> None:
        tagged = parse(await client.get("/feeds/atom", params={"tag": "elections"}))
        titles = [
            e.findtext("atom:title", namespaces=NS) for e in tagged.iter(f"{{{NS['atom']}}}entry")
        ]
        assert titles == ["In Asia", "In Sport"]
        self_link = next(
            link for link in tagged.findall("atom:link", NS) if link.get("rel") == "self"
        )
        assert self_link.get("href") == f"{SITE}/feeds/atom?tag=elections"
        both = await client.get("/feeds/json", params={"tag": "elections", "category": "world"})
        assert [i["title"] for i in both.json()["items"]] == ["In Asia"]

    @pytest.mark.parametrize("path", FEEDS)
    @pytest.mark.parametrize("param", ["category", "tag"])
    @pytest.mark.usefixtures("sections")
    async def test_unknown_slug_is_a_404_problem(
        self, client: httpx.AsyncClient, path: str, param: str
    ) -> None:
        assert_problem(await client.get(path, params={param: "no-such-thing"}), 404)

    @pytest.mark.parametrize("param", ["category", "tag"])
    async def test_overlong_slug_is_a_422(self, client: httpx.AsyncClient, param: str) -> None:
        problem = assert_problem(await client.get("/feeds/rss", params={param: "x" * 81}), 422)
        assert problem["errors"][0]["field"] == param


class TestFeedSize:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"site_url": SITE, "feed_items": 2}

    async def test_feed_items_caps_every_feed(
        self, client: httpx.AsyncClient, session: AsyncSession, kim: User
    ) -> None:
        for i in range(3):
            await make_article(
                session, kim, title=f"N{i}", published_at=utcnow() - timedelta(minutes=i + 1)
            )
        items = (await client.get("/feeds/json")).json()["items"]
        assert [i["title"] for i in items] == ["N0", "N1"]
        assert len(parse(await client.get("/feeds/rss")).findall("channel/item")) == 2
        assert len(parse(await client.get("/feeds/atom")).findall("atom:entry", NS)) == 2


class TestVisibility:
    @pytest.fixture
    async def mixed(self, session: AsyncSession, kim: User) -> dict[str, Article]:
        now = utcnow()
        return {
            "public": await make_article(
                session, kim, title="Public one", published_at=now - timedelta(hours=1)
            ),
            "draft": await make_article(
                session, kim, title="Draft one", status=ArticleStatus.draft
            ),
            "future": await make_article(
                session,
                kim,
                title="Future one",
                status=ArticleStatus.scheduled,
                published_at=now + timedelta(hours=3),
            ),
            "archived": await make_article(
                session, kim, title="Archived one", status=ArticleStatus.archived
            ),
        }

    @pytest.mark.parametrize("path", [*FEEDS, *SITEMAPS])
    async def test_drafts_and_future_articles_never_appear(
        self, client: httpx.AsyncClient, mixed: dict[str, Article], path: str
    ) -> None:
        response = await client.get(path)
        assert response.status_code == 200, response.text
        text = response.text
        for hidden in ("draft", "future", "archived"):
            article = mixed[hidden]
            assert article.title not in text
            assert url_of(article) not in text
            assert f":articles/{article.id}" not in text
        if path != "/sitemap.xml":
            assert url_of(mixed["public"]) in text

    async def test_a_scheduled_article_that_went_live_moves_last_modified(
        self, client: httpx.AsyncClient, session: AsyncSession, kim: User
    ) -> None:
        """Written days ago, live since a minute ago: the feed changed a minute ago."""
        article = await make_article(
            session,
            kim,
            status=ArticleStatus.scheduled,
            published_at=utcnow() + timedelta(hours=1),
        )
        went_live = (utcnow() - timedelta(minutes=1)).replace(microsecond=0)
        await session.execute(
            update(Article)
            .where(Article.id == article.id)
            .values(published_at=went_live, updated_at=utcnow() - timedelta(days=3))
        )
        await session.commit()
        for path in (*FEEDS, "/sitemap.xml", "/sitemaps/articles-1.xml", "/sitemaps/news.xml"):
            response = await client.get(path)
            assert parsedate_to_datetime(response.headers["last-modified"]) == went_live, path


class TestCaching:
    @pytest.mark.parametrize("path", [*FEEDS, *SITEMAPS])
    async def test_etag_last_modified_and_304(
        self, client: httpx.AsyncClient, three: list[Article], path: str
    ) -> None:
        response = await client.get(path)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == (
            "public, max-age=300, stale-while-revalidate=30, stale-if-error=86400"
        )
        last_modified = parsedate_to_datetime(response.headers["last-modified"])
        newest = max(a.updated_at for a in three).replace(microsecond=0)
        assert last_modified == newest
        etag = response.headers["etag"]
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert (await client.get(path)).content == response.content, "bytes are stable"

    async def test_an_empty_feed_is_valid_and_stable(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/feeds/atom")
        feed = parse(first)
        assert feed.findall("atom:entry", NS) == []
        rfc3339(feed.findtext("atom:updated", namespaces=NS))
        assert "last-modified" not in first.headers
        again = await client.get("/feeds/atom", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304


class TestPrivacy:
    @pytest.mark.usefixtures("three")
    @pytest.mark.parametrize(
        "path", [*FEEDS, *SITEMAPS, "/feeds/rss?category=world", "/feeds/atom?tag=peace-talks"]
    )
    async def test_no_email_address_anywhere(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)
        assert response.status_code == 200, response.text
        assert EMAIL not in response.text
        assert "@" not in response.text


class TestXmlSafety:
    async def test_markup_and_control_characters_in_text_keep_the_documents_valid(
        self, client: httpx.AsyncClient, session: AsyncSession, kim: User
    ) -> None:
        title = 'Tom & Jerry <script>alert("x")</script> ]]> \x0b end'
        article = await make_article(session, kim, title=title, published_at=utcnow())
        await session.execute(update(Article).where(Article.id == article.id).values(title=title))
        await session.commit()
        expected = title.replace("\x0b", "")
        rss = parse(await client.get("/feeds/rss"))
        assert rss.find("channel/item").findtext("title") == expected
        atom = parse(await client.get("/feeds/atom"))
        assert atom.find("atom:entry", NS).findtext("atom:title", namespaces=NS) == expected
        news = parse(await client.get("/sitemaps/news.xml"))
        assert news.findtext("sm:url/news:news/news:title", namespaces=NS) == expected
        assert (await client.get("/feeds/json")).json()["items"][0]["title"] == title


class TestSitemaps:
    @pytest.fixture
    def small_pages(self, monkeypatch: pytest.MonkeyPatch) -> int:
        monkeypatch.setattr(service, "SITEMAP_PAGE_SIZE", 2)
        return 2

    @pytest.fixture
    async def five(self, session: AsyncSession, kim: User) -> list[Article]:
        """Five public articles with a draft among them, in id order."""
        made = []
        for i in range(5):
            made.append(await make_article(session, kim, title=f"Paged {i}"))
            if i == 2:
                await make_article(session, kim, title="Hidden draft", status=ArticleStatus.draft)
        return made

    async def test_index_lists_one_sitemap_a_page_and_the_news_sitemap(
        self, client: httpx.AsyncClient, small_pages: int, five: list[Article]
    ) -> None:
        response = await client.get("/sitemap.xml")
        assert response.headers["content-type"] == "application/xml; charset=utf-8"
        index = parse(response)
        assert index.tag == f"{{{NS['sm']}}}sitemapindex"
        locations = [loc.text for loc in index.findall("sm:sitemap/sm:loc", NS)]
        assert locations == [
            f"{SITE}/sitemaps/articles-1.xml",
            f"{SITE}/sitemaps/articles-2.xml",
            f"{SITE}/sitemaps/articles-3.xml",
            f"{SITE}/sitemaps/news.xml",
        ]

    async def test_each_page_lists_its_articles_with_lastmod(
        self, client: httpx.AsyncClient, small_pages: int, five: list[Article]
    ) -> None:
        seen: list[str] = []
        for page, size in ((1, 2), (2, 2), (3, 1)):
            urlset = parse(await client.get(f"/sitemaps/articles-{page}.xml"))
            assert urlset.tag == f"{{{NS['sm']}}}urlset"
            urls = urlset.findall("sm:url", NS)
            assert len(urls) == size
            for url in urls:
                seen.append(url.findtext("sm:loc", namespaces=NS))
                rfc3339(url.findtext("sm:lastmod", namespaces=NS))
        assert seen == [url_of(a) for a in five], "every public article once, in id order"

    async def test_a_page_past_the_last_is_a_404(
        self, client: httpx.AsyncClient, small_pages: int, five: list[Article]
    ) -> None:
        assert_problem(await client.get("/sitemaps/articles-4.xml"), 404)
        assert_problem(await client.get("/sitemaps/articles-0.xml"), 422)
        assert_problem(await client.get("/sitemaps/articles-x.xml"), 422)

    async def test_with_no_articles_the_index_lists_only_the_news_sitemap(
        self, client: httpx.AsyncClient
    ) -> None:
        index = parse(await client.get("/sitemap.xml"))
        assert [loc.text for loc in index.findall("sm:sitemap/sm:loc", NS)] == [
            f"{SITE}/sitemaps/news.xml"
        ]
        assert_problem(await client.get("/sitemaps/articles-1.xml"), 404)

    async def test_news_sitemap_lists_the_last_two_days_only(
        self, client: httpx.AsyncClient, session: AsyncSession, kim: User
    ) -> None:
        now = utcnow()
        fresh = await make_article(
            session, kim, title="Fresh", published_at=now - timedelta(hours=2)
        )
        recent = await make_article(
            session, kim, title="Recent", published_at=now - timedelta(hours=40)
        )
        await make_article(session, kim, title="Old", published_at=now - timedelta(days=3))
        news = parse(await client.get("/sitemaps/news.xml"))
        urls = news.findall("sm:url", NS)
        assert [u.findtext("sm:loc", namespaces=NS) for u in urls] == [
            url_of(fresh),
            url_of(recent),
        ]
        first = urls[0]
        assert first.findtext("news:news/news:publication/news:name", namespaces=NS) == (
            "Example Daily"
        )
        # Google News takes the language alone (en, not en-GB): see test_news_language.
        assert first.findtext("news:news/news:publication/news:language", namespaces=NS) == ("en")
        published = rfc3339(first.findtext("news:news/news:publication_date", namespaces=NS))
        assert fresh.published_at is not None
        assert abs(published - fresh.published_at) < timedelta(seconds=1)
        assert first.findtext("news:news/news:title", namespaces=NS) == "Fresh"

    async def test_index_is_built_from_a_count_not_the_rows(
        self, client: httpx.AsyncClient, small_pages: int, five: list[Article], app: Any
    ) -> None:
        """The index asks the database one aggregate question, whatever the article count."""
        statements: list[str] = []
        engine = app.state.engine.sync_engine

        def record(*args: Any) -> None:
            statements.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", record)
        try:
            assert (await client.get("/sitemap.xml")).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", record)
        about_articles = [s.lower() for s in statements if "articles" in s.lower()]
        assert len(about_articles) == 1
        assert "count(" in about_articles[0]
        assert "limit" not in about_articles[0]


class TestSettings:
    @pytest.mark.parametrize("url", ["ftp://news.example", "news.example", "https://", "/x"])
    def test_site_url_must_be_absolute_http(self, url: str) -> None:
        with pytest.raises(ValidationError):
            Settings(site_url=url)

    def test_site_url_loses_its_trailing_slash(self) -> None:
        assert Settings(site_url="https://news.example/").site_url == "https://news.example"

    @pytest.mark.parametrize(
        "template",
        ["{site_url}/{title}", "/articles/{slug}", "{site_url}/{slug.upper}", "{site_url}/{"],
    )
    def test_article_url_template_is_checked(self, template: str) -> None:
        with pytest.raises(ValidationError):
            Settings(article_url_template=template)

    @pytest.mark.parametrize(
        "template", ["{site_url}/{slug}", "https://m.example/a/{id}", "{site_url}/{number}"]
    )
    def test_good_templates_pass(self, template: str) -> None:
        assert Settings(article_url_template=template).article_url_template == template


class TestOpenApi:
    async def test_routes_document_their_media_types(self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        expected = {
            "/feeds/rss": "application/rss+xml",
            "/feeds/atom": "application/atom+xml",
            "/feeds/json": "application/feed+json",
            "/sitemap.xml": "application/xml",
            "/sitemaps/articles-{page}.xml": "application/xml",
            "/sitemaps/news.xml": "application/xml",
        }
        for path, media_type in expected.items():
            operation = paths[path]["get"]
            assert operation["tags"] == ["feeds"]
            assert media_type in operation["responses"]["200"]["content"], path
        json_feed = paths["/feeds/json"]["get"]["responses"]["200"]["content"]
        assert json_feed["application/feed+json"]["schema"] == {
            "$ref": "#/components/schemas/JsonFeed"
        }
        assert "404" in paths["/feeds/rss"]["get"]["responses"]
        assert (
            "application/problem+json" in paths["/feeds/rss"]["get"]["responses"]["404"]["content"]
        )


def test_w3c_dates_carry_a_zone_and_whole_seconds() -> None:
    moment = datetime(2024, 5, 1, 9, 30, 15, 123456, tzinfo=UTC)
    assert w3c(moment) == "2024-05-01T09:30:15+00:00"


class TestDefaultSiteUrl:
    def test_unset_it_is_where_the_server_listens(self) -> None:
        assert Settings(port=9000).site_url == "http://127.0.0.1:9000"
        everywhere = "0.0.0.0"  # noqa: S104 - a setting's value, nothing is bound
        assert Settings(host=everywhere, port=8080).site_url == "http://127.0.0.1:8080"
        assert Settings(host="::1").site_url == "http://[::1]:8000"
        assert Settings(site_url="https://news.example/", port=9000).site_url == (
            "https://news.example"
        )

    async def test_a_server_started_on_another_port_links_to_it(
        self, app: Any, session: AsyncSession, database_url: str, kim: User
    ) -> None:
        await make_article(session, kim, title="Port story")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("SITE_URL", "PORT", "HOST")}
        env |= {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
        args = ["-m", "app", "serve", "--no-migrate", "--port", str(port)]
        with running_server(Path(sys.executable), args, env, port) as (base, _):
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                feed = (await http.get("/feeds/json")).json()
        assert feed["home_page_url"].startswith(f"http://127.0.0.1:{port}")
        assert feed["items"][0]["url"] == f"http://127.0.0.1:{port}/port-story"


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("en", "en"),
        ("en-GB", "en"),
        ("ps-AF", "ps"),
        ("fil", "fil"),
        ("pt_BR", "pt"),
        ("zh", "zh"),
        ("zh-CN", "zh-cn"),
        ("zh-Hans-SG", "zh-cn"),
        ("zh-TW", "zh-tw"),
        ("zh-Hant-HK", "zh-tw"),
    ],
)
def test_news_language(tag: str, expected: str) -> None:
    """Google News' schema: zh-cn, zh-tw, or two or three lower-case letters."""
    assert news_language(tag) == expected
    assert re.fullmatch(r"zh-cn|zh-tw|[a-z]{2,3}", news_language(tag))
