"""Text derived from an article's body stays text wherever it goes. An author who writes
`&lt;img onerror=…&gt;` (the characters, shown as such in the article) gets those
characters in the excerpt, and no feed turns them into markup: the JSON and the JSON Feed
carry plain text, Atom marks its summary `text`, and RSS, whose description readers render
as HTML, carries the text escaped once. The same through the WordPress importer."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import lxml.html
import pytest
from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.importer.service import import_file
from app.outbox.models import Delivery
from app.users.models import Role
from app.webhooks.models import Webhook
from tests.factories import bearer, make_token, make_user

PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
NS = {"atom": "http://www.w3.org/2005/Atom", "content": "http://purl.org/rss/1.0/modules/content/"}
# What the author typed, as the characters readers should see.
SHOWN = '<img src=x onerror="alert(1)"> & <script>alert(2)</script>'
BODY = f"<p>{html.escape(SHOWN)} &amp;lt;b&amp;gt; stays text.</p>"
EXCERPT = f"{SHOWN} &lt;b&gt; stays text."
LIVE = ("img", "script", "b")


def live_elements(fragment: str) -> list[str]:
    """The elements a client inserting `fragment` as HTML would create."""
    if not fragment.strip():
        return []
    root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    return [el.tag for el in root.iter() if el.tag in LIVE]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"site_url": "https://news.example"}


async def check_every_derived_field(client: httpx.AsyncClient, article_id: int) -> None:
    detail = (await client.get(f"/api/v1/articles/{article_id}")).json()
    listed = (await client.get("/api/v1/articles")).json()["items"]
    # The JSON excerpt is plain text: the characters as the article shows them.
    assert detail["excerpt"] == EXCERPT
    assert [item["excerpt"] for item in listed] == [EXCERPT]
    assert live_elements(detail["body"]) == []

    rss = etree.fromstring((await client.get("/feeds/rss")).content, PARSER)
    (item,) = rss.findall("channel/item")
    description = item.findtext("description")
    assert description == html.escape(EXCERPT, quote=False)
    assert live_elements(description) == [], description
    assert lxml.html.fragment_fromstring(description, create_parent="div").text_content() == EXCERPT
    assert live_elements(item.findtext("content:encoded", namespaces=NS)) == []

    atom = etree.fromstring((await client.get("/feeds/atom")).content, PARSER)
    (entry,) = atom.findall("atom:entry", NS)
    summary = entry.find("atom:summary", NS)
    assert summary.get("type", "text") == "text"
    assert summary.text == EXCERPT
    content = entry.find("atom:content", NS)
    assert content.get("type") == "html"
    assert live_elements(content.text) == []

    (json_item,) = (await client.get("/feeds/json")).json()["items"]
    assert json_item["summary"] == EXCERPT  # JSON Feed: "a plain text sentence or two"
    assert live_elements(json_item["content_html"]) == []


class TestDerivedText:
    async def test_an_excerpt_from_the_body_stays_text_everywhere(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        session.add(
            Webhook(url="https://hooks.example/x", events=["article.published"], secret="s")
        )
        await session.commit()
        made = await client.post(
            "/api/v1/articles",
            json={"title": "Markup as text", "body": BODY, "status": "published"},
            headers=bearer(await make_token(session, editor)),
        )
        assert made.status_code == 201, made.text
        await check_every_derived_field(client, made.json()["id"])
        (delivery,) = (await session.scalars(select(Delivery))).all()
        assert "onerror" not in delivery.payload

    async def test_a_given_excerpt_stays_text_everywhere(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        editor = await make_user(session, role=Role.editor)
        made = await client.post(
            "/api/v1/articles",
            json={
                "title": "Markup as text",
                "body": "<p>Body.</p>",
                "excerpt": BODY,
                "status": "published",
            },
            headers=bearer(await make_token(session, editor)),
        )
        assert made.status_code == 201, made.text
        await check_every_derived_field(client, made.json()["id"])

    async def test_the_same_through_a_wordpress_import(
        self, client: httpx.AsyncClient, session: AsyncSession, tmp_path: Path
    ) -> None:
        path = tmp_path / "markup.xml"
        path.write_text(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<rss version="2.0" xmlns:excerpt="http://wordpress.org/export/1.2/excerpt/"'
            ' xmlns:content="http://purl.org/rss/1.0/modules/content/"'
            ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
            ' xmlns:wp="http://wordpress.org/export/1.2/"><channel>\n'
            "<wp:wxr_version>1.2</wp:wxr_version>\n"
            "<wp:author><wp:author_login>desk</wp:author_login>"
            "<wp:author_display_name>Desk</wp:author_display_name></wp:author>\n"
            "<item><title>Markup as text</title><dc:creator>desk</dc:creator>"
            f"<content:encoded><![CDATA[{BODY}]]></content:encoded>"
            "<excerpt:encoded><![CDATA[]]></excerpt:encoded>"
            "<wp:post_id>5</wp:post_id><wp:status>publish</wp:status>"
            "<wp:post_type>post</wp:post_type>"
            "<wp:post_date_gmt>2020-01-01 10:00:00</wp:post_date_gmt></item>\n"
            "</channel></rss>\n",
            encoding="utf-8",
        )
        report = await import_file(session, path, zone=ZoneInfo("UTC"))
        await session.commit()
        assert report.tallies["articles"].imported == 1
        (article_id,) = [
            item["id"] for item in (await client.get("/api/v1/articles")).json()["items"]
        ]
        await check_every_derived_field(client, article_id)
