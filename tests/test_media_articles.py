"""Media library images on articles: the featured image and body images in detail, lists,
feeds and sitemaps; the alt-text rule on publishing; caches that follow the image."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from defusedxml import ElementTree as ET
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.articles.models import Article
from app.media.models import article_media
from app.users.models import Role
from tests.factories import bearer, make_token, make_user
from tests.support import assert_problem

SITE = "https://news.example"
MEDIA_BASE = "https://img.news.example"
MEDIA_RSS = "http://search.yahoo.com/mrss/"
IMAGE_NS = "http://www.google.com/schemas/sitemap-image/1.1"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {
        "site_url": SITE,
        "media_base_url": MEDIA_BASE,
        "response_cache": True,
        "cache_generation_file": tmp_path / "clock",
    }


def jpeg(width: int = 2400, height: int = 1600) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 90, 160)).save(out, "JPEG", quality=80)
    return out.getvalue()


@pytest.fixture
async def editor(session: AsyncSession) -> dict[str, str]:
    return bearer(await make_token(session, await make_user(session, role=Role.editor)))


async def upload(client: httpx.AsyncClient, headers: dict[str, str], **fields: str) -> Any:
    form = {"credit": "Photo: AP / Jane Roe", "caption": "The harbour at dawn", **fields}
    response = await client.post(
        "/api/v1/media",
        files={"file": ("harbour.jpg", jpeg(), "image/jpeg")},
        data=form,
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def publish(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {"title": "Ships return", "status": "published", "body": "<p>Text.</p>", **fields}
    response = await client.post("/api/v1/articles", json=body, headers=headers)
    return response


class TestFeaturedImage:
    async def test_detail_and_list_items_carry_the_image_with_its_credit_and_sizes(
        self, client: httpx.AsyncClient, editor: dict[str, str]
    ) -> None:
        media = await upload(client, editor, alt_text="Boats in the harbour")
        created = await publish(client, editor, featured_media_id=media["id"])
        assert created.status_code == 201, created.text
        article_id = created.json()["id"]

        detail = (await client.get(f"/api/v1/articles/{article_id}")).json()
        featured = detail["featured_media"]
        assert detail["featured_media_id"] == media["id"]
        assert featured["alt_text"] == "Boats in the harbour"
        assert featured["credit"] == "Photo: AP / Jane Roe"
        assert featured["caption"] == "The harbour at dawn"
        assert featured["sizes"]["w1024"]["url"].startswith(f"{MEDIA_BASE}/")
        assert featured["sizes"]["crop-16x9-f05000500"]["width"] == 1600
        assert f"{featured['sizes']['w640']['url']} 640w" in featured["srcset"]

        listing = (await client.get("/api/v1/articles")).json()
        item = next(i for i in listing["items"] if i["id"] == article_id)
        assert item["featured_media"] == featured

        # Now that a public article shows it, readers may read the item itself.
        public = await client.get(f"/api/v1/media/{media['id']}")
        assert public.status_code == 200, public.text

    async def test_an_unknown_media_id_is_refused(
        self, client: httpx.AsyncClient, editor: dict[str, str]
    ) -> None:
        problem = assert_problem(await publish(client, editor, featured_media_id=999999), 422)
        assert problem["errors"][0]["field"] == "featured_media_id"

    async def test_publishing_needs_the_images_alt_text(
        self, client: httpx.AsyncClient, editor: dict[str, str], session: AsyncSession
    ) -> None:
        media = await upload(client, editor)
        refused = assert_problem(await publish(client, editor, featured_media_id=media["id"]), 422)
        assert "alt text" in refused["detail"]
        assert (await session.scalars(select(Article))).first() is None

        draft = await publish(client, editor, status="draft", featured_media_id=media["id"])
        assert draft.status_code == 201, draft.text
        article_id = draft.json()["id"]
        still = await client.patch(
            f"/api/v1/articles/{article_id}", json={"status": "published"}, headers=editor
        )
        assert_problem(still, 422)

        described = await client.patch(
            f"/api/v1/media/{media['id']}", json={"alt_text": "Boats"}, headers=editor
        )
        assert described.status_code == 200, described.text
        done = await client.patch(
            f"/api/v1/articles/{article_id}", json={"status": "published"}, headers=editor
        )
        assert done.status_code == 200, done.text

    async def test_a_changed_credit_reaches_cached_article_pages_and_lists(
        self, client: httpx.AsyncClient, editor: dict[str, str]
    ) -> None:
        media = await upload(client, editor, alt_text="Boats")
        article_id = (await publish(client, editor, featured_media_id=media["id"])).json()["id"]
        for path in (f"/api/v1/articles/{article_id}", "/api/v1/articles"):
            await client.get(path)
            assert (await client.get(path)).headers.get("x-cache") == "HIT", path

        changed = await client.patch(
            f"/api/v1/media/{media['id']}", json={"credit": "Photo: Reuters"}, headers=editor
        )
        assert changed.status_code == 200, changed.text

        detail = (await client.get(f"/api/v1/articles/{article_id}")).json()
        assert detail["featured_media"]["credit"] == "Photo: Reuters"
        item = (await client.get("/api/v1/articles")).json()["items"][0]
        assert item["featured_media"]["credit"] == "Photo: Reuters"

    async def test_a_forced_delete_takes_the_image_off_its_articles(
        self, client: httpx.AsyncClient, editor: dict[str, str]
    ) -> None:
        media = await upload(client, editor, alt_text="Boats")
        article_id = (await publish(client, editor, featured_media_id=media["id"])).json()["id"]
        await client.get(f"/api/v1/articles/{article_id}")

        refused = await client.delete(f"/api/v1/media/{media['id']}", headers=editor)
        assert_problem(refused, 409)
        forced = await client.delete(
            f"/api/v1/media/{media['id']}", params={"force": "true"}, headers=editor
        )
        assert forced.status_code == 204, forced.text

        detail = (await client.get(f"/api/v1/articles/{article_id}")).json()
        assert detail["featured_media_id"] is None
        assert detail["featured_media"] is None


class TestBodyImages:
    async def test_body_images_carry_their_credit_and_hold_the_item(
        self, client: httpx.AsyncClient, editor: dict[str, str], session: AsyncSession
    ) -> None:
        media = await upload(client, editor, alt_text="Crowd", credit="Photo: Jane Roe")
        src = media["sizes"]["w1024"]["url"]
        body = f'<p>Intro.</p><img src="{src}" alt="Crowd" data-media-id="{media["id"]}">'
        created = await publish(client, editor, body=body)
        assert created.status_code == 201, created.text
        article_id = created.json()["id"]

        detail = (await client.get(f"/api/v1/articles/{article_id}")).json()
        assert f'data-media-id="{media["id"]}"' in detail["body"]
        assert [m["credit"] for m in detail["body_media"]] == ["Photo: Jane Roe"]
        rows = (await session.execute(select(article_media))).all()
        assert [(r.article_id, r.media_id) for r in rows] == [(article_id, media["id"])]

        assert_problem(await client.delete(f"/api/v1/media/{media['id']}", headers=editor), 409)

        # Taken out of the body, the image is free again.
        edited = await client.patch(
            f"/api/v1/articles/{article_id}", json={"body": "<p>Intro.</p>"}, headers=editor
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["body_media"] == []
        gone = await client.delete(f"/api/v1/media/{media['id']}", headers=editor)
        assert gone.status_code == 204, gone.text

    async def test_a_body_naming_an_unknown_item_is_refused(
        self, client: httpx.AsyncClient, editor: dict[str, str]
    ) -> None:
        body = '<img src="https://x.example/a.jpg" alt="a" data-media-id="424242">'
        problem = assert_problem(await publish(client, editor, body=body), 422)
        assert problem["errors"][0]["field"] == "body"

    async def test_a_scripted_srcset_is_dropped(
        self, client: httpx.AsyncClient, editor: dict[str, str]
    ) -> None:
        body = '<img src="https://x.example/a.jpg" alt="a" srcset="javascript:alert(1) 2x">'
        created = await publish(client, editor, body=body)
        assert created.status_code == 201, created.text
        assert "javascript" not in created.json()["body"]


class TestFeedsAndSitemaps:
    @pytest.fixture
    async def featured(self, client: httpx.AsyncClient, editor: dict[str, str]) -> Any:
        media = await upload(client, editor, alt_text="Boats")
        created = await publish(client, editor, featured_media_id=media["id"])
        assert created.status_code == 201, created.text
        return media

    async def test_rss_has_media_content_and_an_enclosure(
        self, client: httpx.AsyncClient, featured: Any
    ) -> None:
        item = ET.fromstring((await client.get("/feeds/rss")).content).find("channel/item")
        assert item is not None
        large = featured["sizes"]["w2048"]
        content = item.find(f".//{{{MEDIA_RSS}}}content")
        assert content is not None
        assert content.get("url") == large["url"]
        assert content.get("medium") == "image"
        assert content.get("width") == "2048"
        enclosure = item.find("enclosure")
        assert enclosure is not None
        assert enclosure.get("url") == large["url"]
        assert enclosure.get("type") == "image/jpeg"
        assert int(enclosure.get("length") or 0) > 0

    async def test_atom_links_the_image_as_an_enclosure(
        self, client: httpx.AsyncClient, featured: Any
    ) -> None:
        atom = "{http://www.w3.org/2005/Atom}"
        root = ET.fromstring((await client.get("/feeds/atom")).content)
        links = root.findall(f"{atom}entry/{atom}link[@rel='enclosure']")
        assert [link.get("href") for link in links] == [featured["sizes"]["w2048"]["url"]]

    async def test_json_feed_items_have_an_image(
        self, client: httpx.AsyncClient, featured: Any
    ) -> None:
        items = (await client.get("/feeds/json")).json()["items"]
        assert items[0]["image"] == featured["sizes"]["w2048"]["url"]

    async def test_the_article_sitemap_lists_the_image(
        self, client: httpx.AsyncClient, featured: Any
    ) -> None:
        root = ET.fromstring((await client.get("/sitemaps/articles-1.xml")).content)
        locations = [e.text for e in root.iter(f"{{{IMAGE_NS}}}loc")]
        assert locations == [featured["sizes"]["w2048"]["url"]]

    async def test_an_image_hosted_elsewhere_still_reaches_the_feeds(
        self, client: httpx.AsyncClient, editor: dict[str, str]
    ) -> None:
        elsewhere = "https://cdn.example/photo.jpg"
        created = await publish(client, editor, featured_image_url=elsewhere)
        assert created.status_code == 201, created.text
        assert (await client.get("/feeds/json")).json()["items"][0]["image"] == elsewhere
        item = ET.fromstring((await client.get("/feeds/rss")).content).find("channel/item")
        assert item is not None
        content = item.find(f".//{{{MEDIA_RSS}}}content")
        assert content is not None
        assert content.get("url") == elsewhere
